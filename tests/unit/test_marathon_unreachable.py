"""Unreachable instances: Unreachable, then UnreachableInactive (replace), then Expunge; never with "disabled"."""

from __future__ import annotations

import pytest

from butte.frameworks.marathon.model import Instance
from butte.frameworks.marathon.unreachable import unreachable_condition
from butte.wire.marathon import App, UnreachableEnabled


def instance(unreachable_since: float | None) -> Instance:
    return Instance(
        task_id="web.1",
        app_id="/web",
        version="v1",
        config_version="v1",
        agent_id="a1",
        host="h1",
        staged_at=0.0,
        state="TASK_UNREACHABLE" if unreachable_since is not None else "TASK_RUNNING",
        unreachable_since=unreachable_since,
    )


def app_with(inactive_s: int, expunge_s: int) -> App:
    strategy = UnreachableEnabled(inactive_after_seconds=inactive_s, expunge_after_seconds=expunge_s)
    return App(id="/web", cmd="serve", unreachable_strategy=strategy)


def test_reachable_instance() -> None:
    assert unreachable_condition(instance(None), app_with(0, 0), 1000.0) == "Reachable"


@pytest.mark.parametrize(
    ("away_s", "expected"),
    [
        (0.0, "Unreachable"),
        (299.9, "Unreachable"),
        (300.0, "UnreachableInactive"),
        (599.0, "UnreachableInactive"),
        (600.0, "Expunge"),
        (10_000.0, "Expunge"),
    ],
)
def test_timeline_300_600(away_s: float, expected: str) -> None:
    assert unreachable_condition(instance(1000.0), app_with(300, 600), 1000.0 + away_s) == expected


def test_zero_zero_expunges_at_once() -> None:
    assert unreachable_condition(instance(50.0), app_with(0, 0), 50.0) == "Expunge"


def test_equal_limits_go_straight_to_expunge() -> None:
    assert unreachable_condition(instance(0.0), app_with(60, 60), 59.0) == "Unreachable"
    assert unreachable_condition(instance(0.0), app_with(60, 60), 60.0) == "Expunge"


def test_marathon_16_default_is_zero_zero() -> None:
    assert unreachable_condition(instance(5.0), App(id="/web", cmd="serve"), 5.0) == "Expunge"


def test_disabled_waits_forever() -> None:
    app = App(id="/web", cmd="serve", unreachable_strategy="disabled")
    assert unreachable_condition(instance(0.0), app, 1e9) == "Unreachable"
    assert unreachable_condition(instance(None), app, 1e9) == "Reachable"
