"""The agent link (``/api/v1/agent``), a master restart rebuilt from agents, and the read-only endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_master_api_kit import (
    JSON_HEADERS,
    FakeAgent,
    Master,
    command_task,
    framework_info,
    master_state,
    running_master,
    scalar,
    subscribe_call,
)

from butte.testing.wait import until

Json = dict[str, Any]


@pytest_asyncio.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    async with running_master(tmp_path) as running:
        yield running


def launch(offer: Json, *tasks: Json) -> Json:
    operations = [{"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}]
    return {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations}}


def wire_task(task_id: str, framework_id: str, agent_id: str, state: str = "TASK_RUNNING") -> Json:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "framework_id": {"value": framework_id},
        "agent_id": {"value": agent_id},
        "state": state,
        "resources": [scalar("cpus", 1.0), scalar("mem", 128.0)],
        "statuses": [{"task_id": {"value": task_id}, "state": state, "timestamp": 1.0}],
    }


# ---- registration ----


async def test_register_answers_registered_and_lists_the_agent(master: Master) -> None:
    agent = await master.agent("node5")
    master_id = master.state.config.master_id
    assert agent.agent_id == f"{master_id}-S0"
    (event,) = agent.log.of("REGISTERED")
    assert event["registered"]["master_info"]["id"] == master_id
    assert master.registry.state_of(agent.agent_id) == "admitted"
    for path in ("/master/state", "/state"):
        state = await master.get_json(path)
        (slave,) = state["slaves"]
        assert (slave["id"], slave["hostname"], slave["active"]) == (agent.agent_id, "node5", True)
        assert slave["pid"] == "slave(1)@127.0.0.1:5051"
        assert slave["resources"] == {"cpus": 4.0, "gpus": 0.0, "mem": 4096.0, "disk": 0.0, "ports": "[31000-31009]"}
    second = await master.agent("node6")
    assert second.agent_id == f"{master_id}-S1"


async def test_agent_calls_need_the_current_stream(master: Master) -> None:
    agent = await master.agent()
    assert await agent.call({"type": "PONG"}) == 202
    assert await agent.call({"type": "PONG"}, stream_id="wrong") == 400
    assert await agent.call({"type": "PONG"}, stream_id="") == 400
    stranger = FakeAgent(master.session, master.base, agent_id="nobody", stream_id=agent.stream_id)
    assert await stranger.call({"type": "PONG"}) == 400


async def test_malformed_agent_calls_are_400(master: Master) -> None:
    response, _ = await master.post("/api/v1/agent", "{", JSON_HEADERS)
    assert response.status == 400
    response, _ = await master.post("/api/v1/agent", json.dumps({"type": "BOGUS"}), JSON_HEADERS)
    assert response.status == 400
    async with master.session.get(master.base + "/api/v1/agent") as got:
        assert got.status == 405 and got.headers["Allow"] == "POST"


async def test_register_with_invalid_resources_is_refused_before_admission(master: Master) -> None:
    agent = FakeAgent(master.session, master.base, resources=[{"name": "cpus", "type": "SCALAR"}])
    call = {"type": "REGISTER", "register": {"agent_info": agent.agent_info()}}
    response, _ = await master.post("/api/v1/agent", json.dumps(call), JSON_HEADERS)
    assert response.status == 400
    assert master.state.agents == {}
    assert master.registry.agents() == {}
    assert (await master.framework()).framework_id  # and the master carries on


# ---- reregistration ----


async def test_a_reregistering_agent_drops_tasks_it_does_not_report(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await scheduler.call(launch(offer, command_task("kept", agent.agent_id), command_task("lost", agent.agent_id)))
    await agent.log.wait("RUN_TASK", 2)
    await agent.disconnect()
    await until(lambda: not master.state.agents[agent.agent_id].active, timeout=5.0)
    await agent.reregister([wire_task("kept", scheduler.framework_id, agent.agent_id)])
    status = await scheduler.wait_update("lost", "TASK_LOST")
    assert "uuid" not in status
    assert set(master.state.frameworks[scheduler.framework_id].tasks) == {"kept"}
    assert master.state.agents[agent.agent_id].active
    # The link works again: an update on the new stream reaches the framework.
    await agent.update(scheduler.framework_id, "kept", "TASK_RUNNING")
    await scheduler.wait_update("kept", "TASK_RUNNING")


async def test_a_second_link_from_the_same_agent_replaces_the_first(master: Master) -> None:
    agent = await master.agent()
    old_stream, old_log = agent.stream_id, agent.log
    twin = FakeAgent(master.session, master.base, agent_id=agent.agent_id)
    master.clients.append(twin)
    await twin.reregister([])
    await old_log.wait_until_ended()
    assert await agent.call({"type": "PONG"}, stream_id=old_stream) == 400
    assert await twin.call({"type": "PONG"}) == 202
    assert master.state.agents[agent.agent_id].active


async def test_a_restarted_master_rebuilds_tasks_and_frameworks_from_its_agents(tmp_path: Path) -> None:
    info = framework_info("web", failover_timeout=3600.0)
    async with running_master(tmp_path, master_state("first")) as first:
        agent = await first.agent()
        scheduler = await first.framework(subscribe_call(info))
        (offer,) = await scheduler.offers()
        await scheduler.call(launch(offer, command_task("t1", agent.agent_id)))
        await agent.log.wait("RUN_TASK")
        framework_id, agent_id = scheduler.framework_id, agent.agent_id
    async with running_master(tmp_path, master_state("second")) as second:
        assert second.registry.state_of(agent_id) == "admitted"
        back = FakeAgent(second.session, second.base, agent_id=agent_id)
        second.clients.append(back)
        await back.reregister(
            [wire_task("t1", framework_id, agent_id)], frameworks=[{**info, "id": {"value": framework_id}}]
        )
        state = await second.get_json("/master/state")
        (recovered,) = state["frameworks"]
        assert (recovered["id"], recovered["recovered"], recovered["active"]) == (framework_id, True, False)
        assert [(t["id"], t["state"]) for t in recovered["tasks"]] == [("t1", "TASK_RUNNING")]
        assert state["slaves"][0]["used_resources"]["cpus"] == 1.0
        scheduler = await second.framework(subscribe_call(info, framework_id=framework_id))
        assert scheduler.framework_id == framework_id
        (offer,) = await scheduler.offers()
        assert {r["name"]: r for r in offer["resources"]}["cpus"]["scalar"] == {"value": 3.0}
        state = await second.get_json("/master/state")
        (framework,) = state["frameworks"]
        assert (framework["active"], framework["recovered"]) == (True, False)
        assert [(t["id"], t["state"]) for t in framework["tasks"]] == [("t1", "TASK_RUNNING")]
        # Nothing was killed or shut down on the agent.
        assert [e["type"] for e in back.log.events] == ["REREGISTERED"]


# ---- read-only endpoints ----


@pytest.mark.parametrize("prefix", ["", "/master"])
async def test_state_summary_counts_tasks(master: Master, prefix: str) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await scheduler.call(launch(offer, command_task("a", agent.agent_id), command_task("b", agent.agent_id)))
    await agent.log.wait("RUN_TASK", 2)
    await agent.update(scheduler.framework_id, "a", "TASK_RUNNING")
    await scheduler.wait_update("a", "TASK_RUNNING")
    summary = await master.get_json(prefix + "/state-summary")
    assert summary["hostname"] == "localhost"
    (slave,) = summary["slaves"]
    assert (slave["TASK_RUNNING"], slave["TASK_STAGING"], slave["TASK_FINISHED"]) == (1, 1, 0)
    assert slave["framework_ids"] == [scheduler.framework_id]
    (framework,) = summary["frameworks"]
    assert (framework["TASK_RUNNING"], framework["TASK_STAGING"]) == (1, 1)
    assert framework["slave_ids"] == [agent.agent_id]


async def test_state_has_the_mesos_top_level_fields(master: Master) -> None:
    state = await master.get_json("/master/state")
    for key in ("version", "id", "pid", "hostname", "leader", "leader_info", "flags", "slaves", "frameworks"):
        assert key in state, key
    assert state["leader"] == state["pid"] == "master@127.0.0.1:5050"
    assert state["flags"] == {"port": "5050"}
    assert state["completed_frameworks"] == [] and state["orphan_tasks"] == []


async def test_state_as_jsonp(master: Master) -> None:
    response, body = await master.get("/master/state?jsonp=cb")
    assert response.status == 200
    assert body.startswith(b"cb(") and body.endswith(b");")
    assert json.loads(body[3:-2])["hostname"] == "localhost"


@pytest.mark.parametrize("path", ["/master/redirect", "/redirect"])
async def test_redirect_points_at_the_leader(master: Master, path: str) -> None:
    response, _ = await master.get(path, allow_redirects=False)
    assert response.status == 307
    assert response.headers["Location"] == "//localhost:5050"


@pytest.mark.parametrize("path", ["/health", "/master/health"])
async def test_health_is_an_empty_200(master: Master, path: str) -> None:
    response, body = await master.get(path)
    assert (response.status, body) == (200, b"")


async def test_version_is_numeric(master: Master) -> None:
    version = await master.get_json("/version")
    assert [int(part) for part in version["version"].split(".")] >= [1, 0, 0]


async def test_metrics_snapshot_counts_agents_frameworks_and_resources(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await scheduler.call(launch(offer, command_task("a", agent.agent_id)))
    await agent.log.wait("RUN_TASK")
    await agent.update(scheduler.framework_id, "a", "TASK_RUNNING")
    await scheduler.wait_update("a", "TASK_RUNNING")
    metrics = await master.get_json("/metrics/snapshot")
    assert metrics["master/elected"] == 1.0
    assert metrics["master/slaves_active"] == 1.0
    assert metrics["master/frameworks_active"] == 1.0
    assert metrics["master/tasks_running"] == 1.0
    assert metrics["master/cpus_total"] == 4.0
    assert metrics["master/cpus_used"] == 1.0
    assert all(isinstance(v, float) for v in metrics.values())


async def test_an_agent_whose_link_breaks_has_its_offers_rescinded(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await agent.disconnect()
    (rescind,) = await scheduler.log.wait("RESCIND")
    assert rescind["rescind"]["offer_id"] == offer["id"]
    state = await master.get_json("/master/state")
    assert (state["activated_slaves"], state["deactivated_slaves"]) == (0.0, 1.0)


@pytest.mark.parametrize("prefix", ["", "/master"])
async def test_frameworks_slaves_tasks_and_flags_endpoints(master: Master, prefix: str) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await scheduler.call(launch(offer, command_task("a", agent.agent_id)))
    await agent.log.wait("RUN_TASK")
    frameworks = await master.get_json(prefix + "/frameworks")
    assert [f["id"] for f in frameworks["frameworks"]] == [scheduler.framework_id]
    slaves = await master.get_json(prefix + "/slaves")
    assert [s["id"] for s in slaves["slaves"]] == [agent.agent_id]
    tasks = await master.get_json(prefix + "/tasks")
    assert [(t["id"], t["state"]) for t in tasks["tasks"]] == [("a", "TASK_STAGING")]
    assert (await master.get_json(prefix + "/flags")) == {"flags": {"port": "5050"}}
