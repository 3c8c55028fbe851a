"""The master shell's health check on a loopback TestServer, driven by a hand-moved clock.

What the pure tests cannot see: the tick marks a silent agent unreachable in the registry before acting,
ends its stream and refuses calls still arriving on it (Mesos drops a partitioned agent's updates,
``PartitionTest.PartitionedSlaveStatusUpdates``), readmits it when it reregisters, spaces removals by
``--agent_removal_rate_limit``, and MARK_AGENT_GONE refuses the agent for good.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_master_api_kit import JSON_HEADERS, running_master

from butte.master.health import AgentHealth, parse_removal_rate
from butte.testing.wait import until

pytestmark = [pytest.mark.integration]

WINDOW_S = 15.0 * 5  # the defaults: 5 missed pings of 15 s


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_silent_agent_is_marked_unreachable_then_readmitted(tmp_path: Path) -> None:
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        agent = await master.agent()
        old_stream = agent.stream_id
        clock.now += WINDOW_S - 1
        assert await agent.call({"type": "PONG"}) == 202  # answering keeps it reachable
        clock.now += WINDOW_S - 1
        await master.get_json("/master/state")
        assert master.registry.state_of(agent.agent_id) == "admitted"

        clock.now += 2
        await until(lambda: master.registry.state_of(agent.agent_id) == "unreachable", timeout=5)
        await agent.log.wait_until_ended()
        assert await agent.call({"type": "PONG"}, stream_id=old_stream) == 400
        state = await master.get_json("/master/state")
        assert (state["unreachable_slaves"], state["slaves"]) == (1, [])

        await agent.reregister([])
        assert master.registry.state_of(agent.agent_id) == "admitted"
        state = await master.get_json("/master/state")
        assert [s["active"] for s in state["slaves"]] == [True]


async def test_removals_are_spaced_by_the_rate_limit(tmp_path: Path) -> None:
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        master.service.agent_health = AgentHealth(15.0, 5, parse_removal_rate("1/10mins"))
        first, second = await master.agent("node1"), await master.agent("node2")
        clock.now += WINDOW_S + 1
        await until(lambda: "unreachable" in {master.registry.state_of(a.agent_id) for a in (first, second)}, timeout=5)
        await master.get_json("/master/state")  # a few ticks later, still only one
        assert sorted(str(master.registry.state_of(a.agent_id)) for a in (first, second)) == ["admitted", "unreachable"]
        clock.now += 600
        await until(
            lambda: {master.registry.state_of(a.agent_id) for a in (first, second)} == {"unreachable"}, timeout=5
        )


async def test_an_agent_marked_gone_is_refused_when_it_comes_back(tmp_path: Path) -> None:
    async with running_master(tmp_path) as master:
        agent = await master.agent()
        call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent.agent_id}}}
        response, body = await master.post("/api/v1", json.dumps(call).encode(), JSON_HEADERS)
        assert (response.status, body) == (200, b"")
        await agent.log.wait("SHUTDOWN")
        await agent.log.wait_until_ended()
        assert master.registry.state_of(agent.agent_id) == "gone"

        await agent._connect({"type": "REREGISTER", "reregister": {"agent_info": agent.agent_info()}})
        (event,) = await agent.log.wait("SHUTDOWN")
        assert event["shutdown"]["message"] == "Agent has been marked gone"
