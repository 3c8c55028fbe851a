"""Checklist group B (agent failure and network partitions), the items test_partition.py and test_agent_loss.py leave.

Items already asserted task by task elsewhere: B12 (``test_partition.py``: partition-aware tasks RUNNING again,
tasks told LOST killed), B13 for partition-aware frameworks (``test_partition.py``), B20 for a registered agent
(``test_agent_loss.py``, ``test_agent_loss_shell.py``). B21 (registry GC by age and count, racing a
reregistration) is in ``test_registry_gc.py`` and ``tests/unit/test_master_registry_gc.py``.

Real processes in a network namespace where the machine allows it (PartitionCluster, skipped with the kit's
reason otherwise); where Mesos's own test drops single messages (a RunTask, a ping), a fake agent on the agent
link drops them the same way, with a hand-moved clock instead of waiting out the ping window.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_master_api_kit import (
    FakeAgent,
    Master,
    Scheduler,
    command_task,
    framework_info,
    running_master,
    subscribe_call,
)

from butte.master.health import AgentHealth
from butte.testing.invariants import RecordingFramework, assert_sound, running_tasks, task_processes
from butte.testing.netns import Namespace, PartitionCluster, unavailable_reason
from butte.testing.wait import until

pytestmark = [pytest.mark.integration]
UNAVAILABLE = unavailable_reason()
needs_netns = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"network namespaces unavailable: {UNAVAILABLE}")

# Unreachable after 3 missed pings of 200 ms (Mesos: 5 x 15 s).
MASTER_FLAGS = {"agent_ping_timeout": "200ms", "max_agent_ping_timeouts": 3}
WINDOW_S = 15.0 * 5  # the shell tests keep Mesos's defaults and move the clock past them
TASKS = 2
Json = dict[str, Any]
Recorder = RecordingFramework
UUID = "AAAAAAAAAAAAAAAAAAAAAA=="  # 16 bytes, base64


# ---- real processes, agent in a network namespace ----


@asynccontextmanager
async def namespaced(tmp_path: Path) -> AsyncIterator[PartitionCluster]:
    with Namespace.create() as namespace:
        async with PartitionCluster(namespace, tmp_path / "cluster", master_flags=MASTER_FLAGS) as cluster:
            yield cluster


async def all_running(cluster: PartitionCluster, *frameworks: RecordingFramework) -> None:
    for framework in frameworks:
        await until(partial(framework.all_in, "TASK_RUNNING"), timeout=30, what=f"{framework.wanted} RUNNING")
    wanted = sum(f.wanted for f in frameworks)
    await until(lambda: len(task_processes(cluster.marker)) == wanted, timeout=10, what="their processes")
    for framework in frameworks:
        framework.history.sample(running_tasks(cluster.marker))


@asynccontextmanager
async def one_framework(tmp_path: Path, *, partition_aware: bool) -> AsyncIterator[tuple[PartitionCluster, Recorder]]:
    """A namespaced agent running TASKS sleepers of one framework, every one RUNNING."""
    async with (
        namespaced(tmp_path) as cluster,
        RecordingFramework(cluster.master_address, partition_aware=partition_aware, wanted=TASKS) as framework,
    ):
        await all_running(cluster, framework)
        yield cluster, framework


async def operator_call(master_url: str, call: Json) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{master_url}/api/v1", data=json.dumps(call), headers=headers) as response,
    ):
        return response.status, await response.text()


@needs_netns
async def test_b11_partitioned_agent_is_unreachable_for_one_framework_and_lost_for_the_other(tmp_path: Path) -> None:
    """Checklist B11: an agent silent for its ping window is unreachable in the registry; the PARTITION_AWARE
    framework is told TASK_UNREACHABLE and the other TASK_LOST, task by task, and both hear ``slaveLost``.
    After the heal (B12, both kinds on one agent) the aware framework's tasks run again, the other's are killed.
    """
    async with (
        namespaced(tmp_path) as cluster,
        RecordingFramework(cluster.master_address, partition_aware=True, wanted=TASKS, name="aware") as aware,
        RecordingFramework(cluster.master_address, partition_aware=False, wanted=TASKS, name="plain") as plain,
    ):
        await all_running(cluster, aware, plain)
        agent_id = await cluster.wait_for_agent()
        cluster.cut()
        await until(lambda: aware.all_in("TASK_UNREACHABLE") and plain.all_in("TASK_LOST"), timeout=10)
        for framework in (aware, plain):
            for task_id in framework.history.launched:
                status = framework.latest(task_id)
                assert status is not None and status.reason == "REASON_AGENT_REMOVED" and status.uuid is None
                assert status.unreachable_time is not None  # Mesos keeps it on the TASK_LOST it makes of it
            assert framework.lost_agents == [agent_id]
        state = await cluster.master_state()
        assert (state["unreachable_slaves"], state["slaves"]) == (1, [])
        assert len(task_processes(cluster.marker)) == 2 * TASKS  # all still run behind the cut

        cluster.heal()
        await until(lambda: aware.all_in("TASK_RUNNING") and plain.all_in("TASK_KILLED"), timeout=30)
        assert await cluster.wait_for_agent() == agent_id
        final = running_tasks(cluster.marker)
        assert sorted(final) == aware.history.launched  # same ids in both frameworks: only the aware ones run
        assert len(task_processes(cluster.marker)) == TASKS
        assert_sound(aware.history, final)
        assert_sound(plain.history, {})


@needs_netns
async def test_b13_task_ending_behind_the_partition_reaches_a_framework_that_was_told_lost(tmp_path: Path) -> None:
    """Checklist B13: (Mesos ``TaskCompletedOnPartitionedAgent``) a framework that is not partition-aware was told
    TASK_LOST; a task that dies behind the cut reports its real end after the heal, the other is killed.
    """
    async with one_framework(tmp_path, partition_aware=False) as (cluster, framework):
        cluster.cut()
        await until(lambda: framework.all_in("TASK_LOST"), timeout=10, what="TASK_LOST")
        for pid, task_id, _ in task_processes(cluster.marker):
            if task_id == "sleeper-0":
                os.kill(pid, signal.SIGKILL)
        await until(lambda: set(running_tasks(cluster.marker)) == {"sleeper-1"}, timeout=10)

        cluster.heal()
        await until(lambda: framework.history.last_state("sleeper-0") == "TASK_FAILED", timeout=30)
        await until(lambda: framework.history.last_state("sleeper-1") == "TASK_KILLED", timeout=30)
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=10, what="sleeper-1 to end")
        for task_id in framework.history.launched:
            assert "TASK_RUNNING" not in [s.state for s in framework.history.seen if s.task_id == task_id][2:]
        assert_sound(framework.history, running_tasks(cluster.marker))


@needs_netns
async def test_b15_orphan_of_a_framework_torn_down_during_the_partition_is_killed(tmp_path: Path) -> None:
    """Checklist B15: (Mesos ``PartitionedSlaveOrphanedTask``) the framework tears down while its agent is cut off;
    when the agent reregisters, its tasks are orphans and are killed; the agent itself stays.
    """
    async with one_framework(tmp_path, partition_aware=True) as (cluster, framework):
        agent_id = await cluster.wait_for_agent()
        cluster.cut()
        await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
        framework_id = framework.client.framework_id
        await framework.client.teardown()
        state = await cluster.master_state()
        assert [f["id"] for f in state["completed_frameworks"]] == [framework_id]

        cluster.heal()
        assert await cluster.wait_for_agent() == agent_id
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=20, what="the orphans to be killed")
        state = await cluster.master_state()
        assert state["frameworks"] == [] and state["unreachable_slaves"] == 0
        assert cluster.agent.running
        assert_sound(framework.history, {})


@needs_netns
async def test_b20_unreachable_agent_marked_gone_is_shut_down_when_it_returns(tmp_path: Path) -> None:
    """Checklist B20: (Mesos ``UnreachableAgentMarkedGone``) the operator marks an unreachable agent gone; its tasks
    become TASK_GONE_BY_OPERATOR; when the partition heals the agent is told to shut down and its tasks end.
    """
    async with one_framework(tmp_path, partition_aware=True) as (cluster, framework):
        agent_id = await cluster.wait_for_agent()
        cluster.cut()
        await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
        call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}
        assert await operator_call(cluster.master_url, call) == (200, "")
        await until(lambda: framework.all_in("TASK_GONE_BY_OPERATOR"), timeout=10)
        for task_id in framework.history.launched:
            status = framework.latest(task_id)
            assert status is not None and status.reason == "REASON_AGENT_REMOVED_BY_OPERATOR"

        cluster.heal()
        await until(lambda: not cluster.agent.running, timeout=30, what="the agent to be shut down")
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=10, what="its tasks to end")
        state = await cluster.master_state()
        assert (state["slaves"], state["unreachable_slaves"]) == ([], 0)
        assert_sound(framework.history, {})


# ---- a fake agent on the agent link, dropping what Mesos's tests drop ----


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def accept(offer: Json, *tasks: Json) -> Json:
    operations = [{"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}]
    return {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations}}


def wire_task(task_id: str, framework_id: str, agent_id: str, state: str = "TASK_RUNNING") -> Json:
    return {
        **command_task(task_id, agent_id),
        "framework_id": {"value": framework_id},
        "state": state,
        "statuses": [{"task_id": {"value": task_id}, "state": state, "timestamp": 1.0}],
    }


async def framework_with_task(
    master: Master, agent: FakeAgent, task_id: str, *, partition_aware: bool, name: str = "fw"
) -> Scheduler:
    """A framework whose task ``task_id`` the agent was asked to run (RUN_TASK delivered)."""
    capabilities = [{"type": "PARTITION_AWARE"}] if partition_aware else []
    scheduler = await master.framework(subscribe_call(framework_info(name, capabilities=capabilities)))
    (offer,) = await scheduler.offers()
    assert (await scheduler.call(accept(offer, command_task(task_id, agent.agent_id)))).status == 202
    await until(lambda: task_id in [t["task_id"]["value"] for t in agent.run_tasks()], timeout=5)
    return scheduler


async def running(master: Master, agent: FakeAgent, task_id: str, *, partition_aware: bool) -> Scheduler:
    scheduler = await framework_with_task(master, agent, task_id, partition_aware=partition_aware)
    await agent.update(scheduler.framework_id, task_id, "TASK_RUNNING")
    await scheduler.wait_update(task_id, "TASK_RUNNING")
    return scheduler


async def silence(master: Master, clock: Clock, agent: FakeAgent) -> None:
    """Let the agent's whole ping window pass without a pong; wait until the master marks it unreachable."""
    clock.now += WINDOW_S + 1
    await until(lambda: master.registry.state_of(agent.agent_id) == "unreachable", timeout=5)


def states(scheduler: Scheduler, task_id: str) -> list[str]:
    return [s["state"] for s in scheduler.updates(task_id)]


async def test_b14_updates_and_executor_exits_from_an_unreachable_agent_are_dropped(tmp_path: Path) -> None:
    """Checklist B14: (Mesos ``PartitionedSlaveStatusUpdates``, ``PartitionedSlaveExitedExecutor``) calls an
    unreachable agent still sends are refused and reach no framework; it then reregisters (no shutdown) and
    the update it sends again arrives.
    """
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        agent = await master.agent()
        scheduler = await running(master, agent, "t1", partition_aware=True)
        await silence(master, clock, agent)
        await scheduler.wait_update("t1", "TASK_UNREACHABLE")

        status = {"task_id": {"value": "t1"}, "state": "TASK_FINISHED", "source": "SOURCE_EXECUTOR", "uuid": UUID}
        update = {"framework_id": {"value": scheduler.framework_id}, "status": status}
        assert await agent.call({"type": "UPDATE", "updates": [update]}) == 400
        exited = {"framework_id": {"value": scheduler.framework_id}, "executor_id": {"value": "t1"}, "status": 0}
        assert await agent.call({"type": "EXECUTOR_EXITED", "executor_exited": exited}) == 400
        assert states(scheduler, "t1") == ["TASK_RUNNING", "TASK_UNREACHABLE"]
        assert master.registry.state_of(agent.agent_id) == "unreachable"

        await agent.reregister([wire_task("t1", scheduler.framework_id, agent.agent_id, "TASK_FINISHED")])
        assert agent.log.of("SHUTDOWN") == [] and master.registry.state_of(agent.agent_id) == "admitted"
        await agent.update(scheduler.framework_id, "t1", "TASK_FINISHED")
        await scheduler.wait_update("t1", "TASK_FINISHED")
        assert states(scheduler, "t1") == ["TASK_RUNNING", "TASK_UNREACHABLE", "TASK_FINISHED"]


@pytest.mark.parametrize(
    ("partition_aware", "told"), [(True, ["TASK_UNREACHABLE", "TASK_GONE"]), (False, ["TASK_LOST", "TASK_LOST"])]
)
async def test_b16_task_dropped_on_the_way_is_cleared_when_the_agent_returns(
    tmp_path: Path, partition_aware: bool, told: list[str]
) -> None:
    """Checklist B16: (Mesos ``ReregisterPartitionedAgentWithEnrouteTask``) the RUN_TASK never reaches the agent,
    which then goes silent; when it reregisters without the task, the framework is told it is gone and the
    master keeps no unreachable record of it.
    """
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        agent = await master.agent()
        scheduler = await framework_with_task(master, agent, "t1", partition_aware=partition_aware)
        await silence(master, clock, agent)  # the fake agent never runs t1: its RUN_TASK is "dropped"
        await scheduler.wait_update("t1", told[0])
        (entry,) = (await master.get_json("/master/state"))["frameworks"]
        assert [t["id"] for t in entry["unreachable_tasks"]] == ["t1"]

        await agent.reregister([])
        await until(lambda: len(scheduler.updates("t1")) == 2, timeout=5, what="t1's second update")
        assert states(scheduler, "t1") == told
        assert scheduler.updates("t1")[-1]["reason"] == "REASON_AGENT_REREGISTERED"
        (entry,) = (await master.get_json("/master/state"))["frameworks"]
        assert (entry["tasks"], entry["unreachable_tasks"]) == ([], [])
        assert agent.log.of("KILL_TASK") == []


async def test_b17_agent_that_hears_no_pings_reregisters_once_its_stream_ends(tmp_path: Path) -> None:
    """Checklist B17: (Mesos ``OneWayPartitionTest.MasterToSlave``) the master's pings are lost on the way to an agent
    that notices nothing; the master marks it unreachable and ends its stream, the agent reregisters with its
    task, which keeps running (no kill) and is reported RUNNING again.
    """
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        agent = await master.agent()
        scheduler = await running(master, agent, "t1", partition_aware=True)
        await silence(master, clock, agent)  # the fake agent never answers PING: they are "lost"
        await scheduler.wait_update("t1", "TASK_UNREACHABLE")
        await agent.log.wait_until_ended()

        await agent.reregister([wire_task("t1", scheduler.framework_id, agent.agent_id)])
        await until(lambda: states(scheduler, "t1")[-1:] == ["TASK_RUNNING"], timeout=5)
        assert states(scheduler, "t1") == ["TASK_RUNNING", "TASK_UNREACHABLE", "TASK_RUNNING"]
        assert scheduler.updates("t1")[-1]["reason"] == "REASON_AGENT_REREGISTERED"
        assert agent.log.of("KILL_TASK") == [] and agent.log.of("SHUTDOWN") == []
        assert master.registry.state_of(agent.agent_id) == "admitted"


async def test_b18_spurious_reregistration_of_a_healthy_agent_kills_nothing(tmp_path: Path) -> None:
    """Checklist B18: (Mesos ``SpuriousSlaveReregistration``) a healthy agent reregisters out of the blue (a ZooKeeper
    flap); the tasks of both kinds of frameworks are kept, nobody is told anything, nothing is killed.
    """
    async with running_master(tmp_path, allocation_interval_s=0.1) as master:
        agent = await master.agent()
        aware = await running(master, agent, "t1", partition_aware=True)
        plain = await running(master, agent, "t2", partition_aware=False)
        await agent.reregister(
            [wire_task("t1", aware.framework_id, agent.agent_id), wire_task("t2", plain.framework_id, agent.agent_id)]
        )
        await agent.update(plain.framework_id, "t2", "TASK_FINISHED")  # a marker: the link works and is in order
        await plain.wait_update("t2", "TASK_FINISHED")
        assert (states(aware, "t1"), states(plain, "t2")) == (["TASK_RUNNING"], ["TASK_RUNNING", "TASK_FINISHED"])
        assert agent.log.of("KILL_TASK") == [] and agent.log.of("SHUTDOWN") == []
        assert aware.log.of("FAILURE") == [] and plain.log.of("FAILURE") == []


class SlowRegistry:
    """The real registry, but each write of an unreachable mark lasts two whole ping windows."""

    def __init__(self, master: Master, clock: Clock) -> None:
        self.inner, self.clock = master.registry, clock
        self.marks: list[tuple[str, str]] = []

    def mark(self, agent_id: str, state: str) -> None:
        self.marks.append((agent_id, state))
        self.clock.now += 2 * WINDOW_S  # meanwhile the agent fails its health check again
        self.inner.mark(agent_id, state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingHealth:
    """The master's health check, counting its passes so a test can wait for the next ones."""

    def __init__(self, inner: AgentHealth) -> None:
        self.inner, self.passes = inner, 0

    def to_mark_unreachable(self, last_pongs: Mapping[str, float], now: float) -> list[str]:
        self.passes += 1
        return self.inner.to_mark_unreachable(last_pongs, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_b19_agent_failing_health_checks_during_a_slow_registry_write_is_marked_once(tmp_path: Path) -> None:
    """Checklist B19: (Mesos ``FailHealthChecksTwice``) the agent fails its health check again while the registry
    write marking it unreachable is still under way; it is marked once and its framework told once.
    """
    clock = Clock()
    async with running_master(tmp_path, clock=clock) as master:
        registry = SlowRegistry(master, clock)
        health = CountingHealth(master.service.agent_health)
        master.service.registry = registry
        master.service.agent_health = health  # type: ignore[assignment]
        agent = await master.agent()
        scheduler = await running(master, agent, "t1", partition_aware=True)
        await silence(master, clock, agent)
        await scheduler.wait_update("t1", "TASK_UNREACHABLE")
        clock.now += WINDOW_S + 1
        passes = health.passes
        await until(lambda: health.passes >= passes + 3, timeout=5, what="three more health-check passes")
        assert registry.marks == [(agent.agent_id, "unreachable")]
        assert health.snapshot().removals == 1
        assert states(scheduler, "t1") == ["TASK_RUNNING", "TASK_UNREACHABLE"]
        assert len(scheduler.log.of("FAILURE")) == 1
