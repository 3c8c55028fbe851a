"""Offers, launches, status updates, kills and reconciliation end to end: a scheduler and fake agents over HTTP."""

from __future__ import annotations

import base64
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_master_api_kit import (
    FakeAgent,
    Master,
    Scheduler,
    command_task,
    framework_info,
    running_master,
    scalar,
    subscribe_call,
)

from butte.testing.wait import until

Json = dict[str, Any]
# Recovered resources (a decline, an accept's leftovers, a finished task) wait for the next batch allocation,
# as in Mesos; tests that expect them back run the batch this often.
BATCH_S = 0.1


@pytest_asyncio.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    async with running_master(tmp_path) as running:
        yield running


def accept(offer_ids: list[str], *tasks: Json, refuse_seconds: float | None = None) -> Json:
    body: Json = {
        "offer_ids": [{"value": o} for o in offer_ids],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}],
    }
    if refuse_seconds is not None:
        body["filters"] = {"refuse_seconds": refuse_seconds}
    return {"type": "ACCEPT", "accept": body}


async def launched(master: Master, capabilities: list[str] | None = None) -> tuple[Scheduler, FakeAgent, Json]:
    """A framework with task t1 on one agent (RUN_TASK delivered)."""
    agent = await master.agent()
    info = framework_info(capabilities=[{"type": c} for c in capabilities or []])
    scheduler = await master.framework(subscribe_call(info))
    (offer,) = await scheduler.offers()
    response = await scheduler.call(accept([offer["id"]["value"]], command_task("t1", agent.agent_id)))
    assert response.status == 202
    await agent.log.wait("RUN_TASK")
    return scheduler, agent, offer


# ---- offers ----


async def test_an_agent_is_offered_at_once_to_a_subscribed_framework(master: Master) -> None:
    scheduler = await master.framework()
    agent = await master.agent(hostname="node9")
    (offer,) = await scheduler.offers()  # the batch interval is 60 s: this offer was made on the event
    master_id = master.state.config.master_id
    assert offer["id"] == {"value": f"{master_id}-O0"}
    assert offer["agent_id"] == {"value": agent.agent_id}
    assert offer["framework_id"] == {"value": scheduler.framework_id}
    assert offer["hostname"] == "node9"
    assert "allocation_info" not in offer
    by_name = {r["name"]: r for r in offer["resources"]}
    assert by_name["cpus"]["scalar"] == {"value": 4.0}
    assert by_name["ports"]["ranges"] == {"range": [{"begin": 31000, "end": 31009}]}
    assert all(r.get("role") == "*" and "allocation_info" not in r for r in offer["resources"])


async def test_multi_role_offers_carry_allocation_info(master: Master) -> None:
    info = framework_info(roles=["web"], capabilities=[{"type": "MULTI_ROLE"}])
    scheduler = await master.framework(subscribe_call(info))
    await master.agent()
    (offer,) = await scheduler.offers()
    assert offer["allocation_info"] == {"role": "web"}
    assert all(r["allocation_info"] == {"role": "web"} for r in offer["resources"])


async def test_offer_timeout_rescinds_and_offers_again(tmp_path: Path) -> None:
    # Rescinded resources come back at the next batch allocation.
    async with running_master(tmp_path, offer_timeout_s=0.3, allocation_interval_s=BATCH_S) as master:
        scheduler = await master.framework()
        await master.agent()
        (first,) = await scheduler.offers()
        (rescind,) = await scheduler.log.wait("RESCIND")
        assert rescind["rescind"]["offer_id"] == first["id"]
        offers = await scheduler.offers(2)
        assert offers[1]["id"] != first["id"]


async def test_suppress_stops_offers_until_revive(master: Master) -> None:
    scheduler = await master.framework()
    assert (await scheduler.call({"type": "SUPPRESS"})).status == 202
    await master.agent()  # allocation runs on the admission, before the agent reads REGISTERED
    assert scheduler.log.of("OFFERS") == [] and master.state.offers == {}
    assert (await scheduler.call({"type": "REVIVE"})).status == 202
    assert len(await scheduler.offers()) == 1


async def test_revive_clears_a_decline_filter(master: Master) -> None:
    scheduler = await master.framework()
    await master.agent()
    (offer,) = await scheduler.offers()
    decline = {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 3600.0}}
    assert (await scheduler.call({"type": "DECLINE", "decline": decline})).status == 202
    assert master.state.offers == {}
    await scheduler.call({"type": "REVIVE"})
    offers = await scheduler.offers(2)
    assert offers[1]["agent_id"] == offer["agent_id"]


# ---- accept ----


async def test_a_launched_task_reaches_its_agent_and_is_staging(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    (task,) = agent.run_tasks()
    assert task["task_id"] == {"value": "t1"}
    assert agent.log.of("RUN_TASK")[0]["run_task"]["framework_info"]["id"] == {"value": scheduler.framework_id}
    state = await master.get_json("/master/state")
    (framework,) = state["frameworks"]
    (entry,) = framework["tasks"]
    assert (entry["id"], entry["state"], entry["slave_id"]) == ("t1", "TASK_STAGING", agent.agent_id)
    assert entry["resources"]["cpus"] == 1.0


@pytest.mark.parametrize(("capabilities", "state"), [([], "TASK_LOST"), (["PARTITION_AWARE"], "TASK_DROPPED")])
async def test_an_unknown_offer_drops_the_task(master: Master, capabilities: list[str], state: str) -> None:
    agent = await master.agent()
    scheduler = await master.framework(subscribe_call(framework_info(capabilities=[{"type": c} for c in capabilities])))
    await scheduler.offers()
    assert (await scheduler.call(accept(["bogus"], command_task("t1", agent.agent_id)))).status == 202
    status = await scheduler.wait_update("t1", state)
    assert status["reason"] == "REASON_INVALID_OFFERS"
    assert "uuid" not in status
    assert agent.run_tasks() == []


async def test_a_task_bigger_than_its_offer_errors(tmp_path: Path) -> None:
    async with running_master(tmp_path, allocation_interval_s=BATCH_S) as master:
        await _a_task_bigger_than_its_offer_errors(master)


async def _a_task_bigger_than_its_offer_errors(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    task = command_task("big", agent.agent_id, cpus=64.0)
    await scheduler.call(accept([offer["id"]["value"]], task, refuse_seconds=0.0))
    status = await scheduler.wait_update("big", "TASK_ERROR")
    assert status["reason"] == "REASON_TASK_INVALID"
    # The offer's resources came back without a filter and are offered again at the next batch.
    offers = await scheduler.offers(2)
    assert {r["name"]: r for r in offers[1]["resources"]}["cpus"]["scalar"] == {"value": 4.0}


async def test_unused_resources_are_offered_again(tmp_path: Path) -> None:
    async with running_master(tmp_path, allocation_interval_s=BATCH_S) as master:
        await _unused_resources_are_offered_again(master)


async def _unused_resources_are_offered_again(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    await scheduler.call(accept([offer["id"]["value"]], command_task("t1", agent.agent_id), refuse_seconds=0.0))
    offers = await scheduler.offers(2)
    assert {r["name"]: r for r in offers[1]["resources"]}["cpus"]["scalar"] == {"value": 3.0}


async def test_launch_group_sends_run_task_group(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework()
    (offer,) = await scheduler.offers()
    executor = {
        "type": "DEFAULT",
        "executor_id": {"value": "default"},
        "resources": [scalar("cpus", 0.1), scalar("mem", 32.0)],
    }
    tasks = [command_task(t, agent.agent_id) for t in ("g1", "g2")]
    for task in tasks:
        del task["command"]
    group = {"executor": executor, "task_group": {"tasks": tasks}}
    body = {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH_GROUP", "launch_group": group}]}
    assert (await scheduler.call({"type": "ACCEPT", "accept": body})).status == 202
    (event,) = await agent.log.wait("RUN_TASK_GROUP")
    run = event["run_task_group"]
    assert run["executor"]["executor_id"] == {"value": "default"}
    assert [t["task_id"]["value"] for t in run["task_group"]["tasks"]] == ["g1", "g2"]


# ---- status updates ----


async def test_an_agent_update_reaches_the_framework_and_the_ack_reaches_the_agent(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    uuid = await agent.update(scheduler.framework_id, "t1", "TASK_RUNNING")
    status = await scheduler.wait_update("t1", "TASK_RUNNING")
    assert status["uuid"] == uuid
    assert status["agent_id"] == {"value": agent.agent_id}
    ack = {"agent_id": {"value": agent.agent_id}, "task_id": {"value": "t1"}, "uuid": uuid}
    assert (await scheduler.call({"type": "ACKNOWLEDGE", "acknowledge": ack})).status == 202
    (event,) = await agent.log.wait("ACKNOWLEDGE_UPDATE")
    relayed = event["acknowledge_update"]
    assert relayed == {"framework_id": {"value": scheduler.framework_id}, "task_id": {"value": "t1"}, "uuid": uuid}


async def test_a_finished_and_acknowledged_task_is_completed_and_its_resources_offered(tmp_path: Path) -> None:
    async with running_master(tmp_path, allocation_interval_s=BATCH_S) as master:
        await _a_finished_and_acknowledged_task_is_completed(master)


async def _a_finished_and_acknowledged_task_is_completed(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    uuid = await agent.update(scheduler.framework_id, "t1", "TASK_FINISHED")
    await scheduler.wait_update("t1", "TASK_FINISHED")
    # The task's resources come back at the next batch; with them the agent is whole again, which the 5 s
    # filter on the unused part of the first offer does not cover, so the whole agent is offered.
    offers = await scheduler.offers(2)
    assert {r["name"]: r for r in offers[1]["resources"]}["cpus"]["scalar"] == {"value": 4.0}
    ack = {"agent_id": {"value": agent.agent_id}, "task_id": {"value": "t1"}, "uuid": uuid}
    await scheduler.call({"type": "ACKNOWLEDGE", "acknowledge": ack})
    state = await master.get_json("/master/state")
    (framework,) = state["frameworks"]
    assert framework["tasks"] == []
    assert [(t["id"], t["state"]) for t in framework["completed_tasks"]] == [("t1", "TASK_FINISHED")]


async def test_plain_frameworks_are_told_task_lost_for_gone(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    await agent.update(scheduler.framework_id, "t1", "TASK_GONE")
    status = await scheduler.wait_update("t1", "TASK_LOST")
    assert status["task_id"] == {"value": "t1"}


# ---- kill, reconcile, messages ----


async def test_kill_goes_to_the_agent_of_the_task(master: Master) -> None:
    first = await master.agent("node1")
    second = await master.agent("node2")
    scheduler = await master.framework()
    offers = await scheduler.offers()
    by_agent = {o["agent_id"]["value"]: o["id"]["value"] for o in offers}
    await scheduler.call(accept([by_agent[second.agent_id]], command_task("t2", second.agent_id)))
    await second.log.wait("RUN_TASK")
    await scheduler.call({"type": "KILL", "kill": {"task_id": {"value": "t2"}}})
    (event,) = await second.log.wait("KILL_TASK")
    assert event["kill_task"]["task_id"] == {"value": "t2"}
    assert first.log.of("KILL_TASK") == []
    assert by_agent[first.agent_id]


async def test_kill_of_an_unknown_task_is_answered_like_reconciliation(master: Master) -> None:
    scheduler = await master.framework()
    await scheduler.call({"type": "KILL", "kill": {"task_id": {"value": "ghost"}}})
    status = await scheduler.wait_update("ghost", "TASK_LOST")
    assert status["reason"] == "REASON_RECONCILIATION" and "uuid" not in status


async def test_reconciliation_explicit_and_implicit(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    await agent.update(scheduler.framework_id, "t1", "TASK_RUNNING")
    await scheduler.wait_update("t1", "TASK_RUNNING")
    asked = [{"task_id": {"value": "t1"}}, {"task_id": {"value": "ghost"}, "agent_id": {"value": agent.agent_id}}]
    await scheduler.call({"type": "RECONCILE", "reconcile": {"tasks": asked}})
    await until(lambda: len(scheduler.updates()) >= 3, timeout=5.0)
    known, unknown = scheduler.updates()[1:3]
    assert (known["task_id"]["value"], known["state"], known["reason"]) == (
        "t1",
        "TASK_RUNNING",
        "REASON_RECONCILIATION",
    )
    assert "uuid" not in known
    assert (unknown["task_id"]["value"], unknown["state"]) == ("ghost", "TASK_LOST")
    await scheduler.call({"type": "RECONCILE", "reconcile": {}})
    await until(lambda: len(scheduler.updates()) >= 4, timeout=5.0)
    assert scheduler.updates()[3]["task_id"] == {"value": "t1"}


async def test_messages_flow_both_ways_and_executor_exit_is_a_failure(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    data = base64.b64encode(b"hello").decode()
    message = {"agent_id": {"value": agent.agent_id}, "executor_id": {"value": "t1"}, "data": data}
    assert (await scheduler.call({"type": "MESSAGE", "message": message})).status == 202
    (relayed,) = await agent.log.wait("FRAMEWORK_MESSAGE")
    assert relayed["framework_message"]["data"] == data
    back = {"framework_id": {"value": scheduler.framework_id}, "executor_id": {"value": "t1"}, "data": data}
    assert await agent.call({"type": "MESSAGE", "message": back}) == 202
    (event,) = await scheduler.log.wait("MESSAGE")
    assert event["message"] == {"agent_id": {"value": agent.agent_id}, "executor_id": {"value": "t1"}, "data": data}
    exited = {"framework_id": {"value": scheduler.framework_id}, "executor_id": {"value": "t1"}, "status": 256}
    assert await agent.call({"type": "EXECUTOR_EXITED", "executor_exited": exited}) == 202
    (failure,) = await scheduler.log.wait("FAILURE")
    assert failure["failure"] == {"agent_id": {"value": agent.agent_id}, "executor_id": {"value": "t1"}, "status": 256}


async def test_teardown_shuts_the_framework_down_on_its_agents(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    await scheduler.call({"type": "TEARDOWN"})
    (event,) = await agent.log.wait("SHUTDOWN_FRAMEWORK")
    assert event["shutdown_framework"]["framework_id"] == {"value": scheduler.framework_id}
    state = await master.get_json("/master/state")
    (done,) = state["completed_frameworks"]
    assert [(t["id"], t["state"]) for t in done["completed_tasks"]] == [("t1", "TASK_KILLED")]
    assert state["slaves"][0]["used_resources"]["cpus"] == 0.0


async def test_failover_timeout_kills_the_tasks_of_a_framework_that_stays_away(master: Master) -> None:
    agent = await master.agent()
    scheduler = await master.framework(subscribe_call(framework_info(failover_timeout=0.5)))
    (offer,) = await scheduler.offers()
    await scheduler.call(accept([offer["id"]["value"]], command_task("t1", agent.agent_id)))
    await agent.log.wait("RUN_TASK")
    await scheduler.close()
    framework = master.state.frameworks[scheduler.framework_id]
    await until(lambda: not framework.connected, timeout=5.0)
    assert agent.log.of("SHUTDOWN_FRAMEWORK") == []  # not before the timeout
    (event,) = await agent.log.wait("SHUTDOWN_FRAMEWORK")
    assert event["shutdown_framework"]["framework_id"] == {"value": scheduler.framework_id}


async def test_acknowledging_an_update_the_master_made_is_harmless(master: Master) -> None:
    scheduler, agent, _ = await launched(master)
    stray = base64.b64encode(uuidlib.uuid4().bytes).decode()
    ack = {"agent_id": {"value": agent.agent_id}, "task_id": {"value": "t1"}, "uuid": stray}
    assert (await scheduler.call({"type": "ACKNOWLEDGE", "acknowledge": ack})).status == 202
    assert master.state.frameworks[scheduler.framework_id].tasks["t1"].state == "TASK_STAGING"
