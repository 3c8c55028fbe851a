"""Agent liveness from pongs and the rate-limited choice of agents to mark unreachable (a fake clock)."""

from __future__ import annotations

import argparse

import pytest

from butte.cli import master_cmd
from butte.core.errors import ValidationError
from butte.master.health import AgentHealth, RemovalRateLimit, parse_removal_rate

START = 1000.0


def test_removal_rate_parses_mesos_spelling() -> None:
    limit = parse_removal_rate("1/10mins")
    assert limit == RemovalRateLimit(removals=1, per_s=600.0)
    assert limit.spacing_s == 600.0
    assert str(limit) == "1/10mins"
    assert parse_removal_rate("4/2secs").spacing_s == 0.5


@pytest.mark.parametrize("text", ["", "10mins", "0/1secs", "x/1secs", "1/", "1/soon", "-1/1secs"])
def test_removal_rate_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_removal_rate(text)


def test_an_agent_is_overdue_after_max_missed_pings() -> None:
    health = AgentHealth(ping_timeout_s=0.2, max_ping_timeouts=3)
    assert health.window_s == pytest.approx(0.6)
    pongs = {"a": START}
    assert health.to_mark_unreachable(pongs, START + 0.59) == []
    assert health.to_mark_unreachable(pongs, START + 0.6) == ["a"]


def test_overdue_agents_come_longest_silent_first_ties_by_id() -> None:
    health = AgentHealth(ping_timeout_s=1.0, max_ping_timeouts=2)
    pongs = {"b": START, "a": START, "c": START - 5, "fresh": START + 9}
    assert health.overdue(pongs, START + 10) == ["c", "a", "b"]


def test_without_a_rate_limit_every_overdue_agent_is_marked_at_once() -> None:
    health = AgentHealth(ping_timeout_s=1.0, max_ping_timeouts=1)
    assert health.to_mark_unreachable({"a": START, "b": START}, START + 1) == ["a", "b"]
    assert health.snapshot().removals == 2


def test_the_rate_limit_spaces_removals() -> None:
    health = AgentHealth(ping_timeout_s=1.0, max_ping_timeouts=1, rate_limit=parse_removal_rate("1/10mins"))
    pongs = {"a": START, "b": START}
    assert health.to_mark_unreachable(pongs, START + 1) == ["a"]
    del pongs["a"]  # the shell has marked it: it no longer appears among the live agents
    assert health.to_mark_unreachable(pongs, START + 2) == []
    assert health.to_mark_unreachable(pongs, START + 600) == []
    assert health.to_mark_unreachable(pongs, START + 601) == ["b"]
    snapshot = health.snapshot()
    assert (snapshot.removals, snapshot.last_removal) == (2, START + 601)


def test_an_agent_that_answers_while_waiting_for_a_permit_is_not_removed() -> None:
    health = AgentHealth(ping_timeout_s=1.0, max_ping_timeouts=1, rate_limit=parse_removal_rate("1/1mins"))
    assert health.to_mark_unreachable({"a": START, "b": START}, START + 1) == ["a"]
    # b answers again while it waits for a permit: once one is free it is no longer overdue.
    assert health.to_mark_unreachable({"b": START + 30}, START + 31) == []
    assert health.to_mark_unreachable({"b": START + 60.5}, START + 61) == []
    assert health.snapshot().removals == 1
    # The permit was not used up: the next overdue agent is marked at once.
    assert health.to_mark_unreachable({"b": START + 60.5}, START + 62) == ["b"]


def test_the_master_flags_take_the_rate_limit_and_the_reregister_timeout() -> None:
    parser = argparse.ArgumentParser()
    master_cmd.configure(parser)
    args = parser.parse_args(["--agent_removal_rate_limit=2/1mins", "--agent_reregister_timeout=15mins"])
    assert args.agent_removal_rate_limit == RemovalRateLimit(removals=2, per_s=60.0)
    assert args.agent_reregister_timeout == 900.0
    defaults = parser.parse_args([])
    assert (defaults.agent_removal_rate_limit, defaults.agent_reregister_timeout) == (None, 600.0)
