"""Checklist group D (framework failover), scenario by scenario, asserting what the framework saw task by task.

Real processes (a master, an agent, sleepers whose processes the test can see) where the scenario is about
tasks surviving or dying; the in-process master with a fake agent where the scenario is about one message
being lost (a reply, a heartbeat), which the test then drops as Mesos's own tests do. Earlier tests that
cover parts of these: ``test_master_failover.py`` (D33 without the pending update), ``test_master_api.py``
(D34 after TEARDOWN on the raw API, D35's stale stream id, D37's 403), ``tests/unit/test_status_updates.py``
(D39 inside the agent's update manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from test_master_api_kit import FakeAgent, Master, Scheduler, framework_info, running_master, subscribe_call
from test_master_api_kit import command_task as wire_command_task

import butte.master.frameworks
import butte.master.service
from butte.scheduler.sdk import ConnectionLost, Disconnected, SchedulerClient, SubscribeRefused, command_task
from butte.testing.cluster import Cluster
from butte.testing.invariants import History, assert_sound, running_tasks
from butte.testing.sleepers import SleeperFramework, pid_alive, sleeper_framework, task_pids
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import FrameworkInfo
from butte.wire.recordio import RecordIODecoder
from butte.wire.scheduler import Event

pytestmark = [pytest.mark.integration]
Json = dict[str, Any]
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def history_of(*frameworks: SleeperFramework) -> History:
    """One history from the instances of one framework, in the order they ran."""
    history = History()
    for framework in frameworks:
        for status in framework.statuses:
            history.told(status)
    history.launched = [f"sleeper-{i}" for i in range(max(f.launched for f in frameworks))]
    return history


def running_all(framework: SleeperFramework, count: int) -> bool:
    return all(framework.latest(f"sleeper-{i}") == "TASK_RUNNING" for i in range(count))


def states(framework: SleeperFramework, task_id: str) -> list[str]:
    return [s.state for s in framework.statuses if s.task_id.value == task_id]


# ---- real processes ----


async def test_d33_scheduler_failover_keeps_the_tasks_and_gets_the_update_sent_meanwhile(tmp_path: Path) -> None:
    """Checklist D33: (Mesos ``SchedulerFailover``, ``SchedulerFailoverStatusUpdate``) the scheduler goes away within
    its failover_timeout; a task ends meanwhile; the new instance subscribes with the same framework id, gets
    that task's end, and finds the other task still running as the very same process.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        async with sleeper_framework(cluster.master_address, pid_dir, 2, failover_timeout=60) as first:
            await until(lambda: running_all(first, 2), timeout=30, what="both sleepers to run")
            await until(lambda: len(task_pids(pid_dir)) == 2, timeout=10)
            framework_id = first.client.framework_id
        pids = task_pids(pid_dir)
        os.kill(pids["sleeper-0"], signal.SIGKILL)  # its TASK_FAILED has no framework to go to yet
        await until(lambda: not pid_alive(pids["sleeper-0"]), timeout=10)

        async with sleeper_framework(
            cluster.master_address, pid_dir, 0, failover_timeout=60, framework_id=framework_id
        ) as second:
            assert second.client.framework_id == framework_id
            await until(lambda: second.latest("sleeper-0") == "TASK_FAILED", timeout=30, what="the pending update")
            await second.client.reconcile([("sleeper-1", None)])
            await until(lambda: second.latest("sleeper-1") == "TASK_RUNNING", timeout=10)
            assert pid_alive(pids["sleeper-1"])
            assert "TASK_FAILED" not in states(first, "sleeper-0")
            assert_sound(history_of(first, second), running_tasks(cluster.marker))
            await second.client.teardown()


async def subscribe_refused(master: str, framework_id: str) -> str:
    """Try to subscribe again with ``framework_id``; the master's refusal.

    Raises:
        AssertionError: the master took the framework back.
    """
    info = FrameworkInfo(user=os.environ.get("USER", "root"), name="sleepers", id=ID(value=framework_id))
    client = SchedulerClient(master, info, initial_backoff_s=0.1, max_backoff_s=0.5)
    try:
        with pytest.raises(SubscribeRefused) as refused:
            await client.subscribe(timeout_s=10)
        return str(refused.value)
    finally:
        await client.close()


@pytest.mark.parametrize("how", ["teardown", "failover timeout"])
async def test_d34_framework_cannot_come_back_after_teardown_or_failover_timeout(tmp_path: Path, how: str) -> None:
    """Checklist D34: (Mesos ``SchedulerReregisterAfterFailoverTimeout``, ``SchedulerReregisterAfterUnregistration``,
    ``SchedulerSubscribeAfterTeardown``) its tasks are killed, it is a completed framework, and subscribing
    again with its id is refused.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        timeout_s = 1.0 if how == "failover timeout" else 300.0
        async with sleeper_framework(cluster.master_address, pid_dir, 1, failover_timeout=timeout_s) as fw:
            await until(lambda: running_all(fw, 1), timeout=30, what="the sleeper to run")
            await until(lambda: "sleeper-0" in task_pids(pid_dir), timeout=10)
            framework_id = fw.client.framework_id
            assert framework_id is not None
            if how == "teardown":
                await fw.client.teardown()
        pid = task_pids(pid_dir)["sleeper-0"]
        await until(lambda: not pid_alive(pid), timeout=30, what="the sleeper to be killed")

        async def completed() -> Json | None:
            found = (await cluster.master_state())["completed_frameworks"]
            return next((f for f in found if f["id"] == framework_id), None)

        entry = await until(completed, timeout=10, what="a completed framework")
        assert [(t["id"], t["state"]) for t in entry["completed_tasks"]] == [("sleeper-0", "TASK_KILLED")]
        assert states(fw, "sleeper-0")[-1] == "TASK_RUNNING"  # the framework itself is told nothing more
        assert await subscribe_refused(cluster.master_address, framework_id)
        assert running_tasks(cluster.marker) == {}


async def raw_subscribe(session: aiohttp.ClientSession, master_url: str, body: Json) -> tuple[str, str]:
    """SUBSCRIBE by hand and read SUBSCRIBED; (framework id, stream id). The stream stays open in ``session``."""
    response = await session.post(f"{master_url}/api/v1/scheduler", data=json.dumps(body), headers=JSON_HEADERS)
    assert response.status == 200
    decoder = RecordIODecoder()
    async for chunk in response.content.iter_any():
        for record in decoder.feed(chunk):
            event = json.loads(record)
            assert event["type"] == "SUBSCRIBED"
            return event["subscribed"]["framework_id"]["value"], response.headers["Mesos-Stream-Id"]
    raise AssertionError("the stream ended before SUBSCRIBED")


async def test_d35_kill_from_the_old_instance_after_a_failover_is_ignored(tmp_path: Path) -> None:
    """Checklist D35: (Mesos ``IgnoreKillTaskFromUnregisteredFramework``; on HTTP a stale ``Mesos-Stream-Id``) the old
    instance, still thinking it leads, asks to kill a task after the new one took over; the task keeps running.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    info = {"user": os.environ.get("USER", "root"), "name": "sleepers", "failover_timeout": 60.0}
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster, aiohttp.ClientSession() as old:
        framework_id, old_stream = await raw_subscribe(old, cluster.master_url, subscribe_call(info))
        async with sleeper_framework(
            cluster.master_address, pid_dir, 1, failover_timeout=60, framework_id=framework_id
        ) as new:
            await until(lambda: running_all(new, 1), timeout=30, what="the sleeper to run")
            await until(lambda: "sleeper-0" in task_pids(pid_dir), timeout=10)
            kill = {
                "framework_id": {"value": framework_id},
                "type": "KILL",
                "kill": {"task_id": {"value": "sleeper-0"}},
            }
            headers = {**JSON_HEADERS, "Mesos-Stream-Id": old_stream}
            async with old.post(f"{cluster.master_url}/api/v1/scheduler", json=kill, headers=headers) as answer:
                assert answer.status == 400, await answer.text()

            await new.client.reconcile([("sleeper-0", None)])
            answered = lambda: states(new, "sleeper-0").count("TASK_RUNNING") >= 2  # noqa: E731
            await until(answered, timeout=10, what="the reconciliation answer")
            assert states(new, "sleeper-0")[-2:] == ["TASK_RUNNING", "TASK_RUNNING"]
            assert "TASK_KILLED" not in states(new, "sleeper-0")
            assert pid_alive(task_pids(pid_dir)["sleeper-0"])
            assert_sound(history_of(new), running_tasks(cluster.marker))
            await new.client.teardown()


async def test_d39_duplicate_and_unexpected_acknowledgements_are_harmless(tmp_path: Path) -> None:
    """Checklist D39: (Mesos ``IgnoreDuplicateStatusUpdateAck``, ``IgnoreUnexpectedStatusUpdateAck``) the scheduler
    acknowledges an update twice more and acknowledges a uuid the agent never sent; the task runs on, and its
    next update (the kill) arrives once.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with (
        Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster,
        sleeper_framework(cluster.master_address, pid_dir, 1) as fw,
    ):
        await until(lambda: running_all(fw, 1), timeout=30, what="the sleeper to run")
        (running,) = [s for s in fw.statuses if s.state == "TASK_RUNNING"]
        await fw.client.acknowledge(running)
        await fw.client.acknowledge(running)
        await fw.client.acknowledge(msgspec.structs.replace(running, uuid="AAAAAAAAAAAAAAAAAAAAAA=="))
        await fw.client.reconcile([("sleeper-0", None)])
        await until(lambda: len(states(fw, "sleeper-0")) >= 2, timeout=10, what="the reconciliation answer")
        assert pid_alive(task_pids(pid_dir)["sleeper-0"])

        await fw.client.kill("sleeper-0")
        await until(lambda: fw.latest("sleeper-0") == "TASK_KILLED", timeout=10)
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=10)
        seen = [s for s in states(fw, "sleeper-0") if s != "TASK_RUNNING"]
        assert seen.count("TASK_KILLED") == 1
        assert_sound(history_of(fw), running_tasks(cluster.marker))


# ---- the in-process master, one lost message at a time ----


def accept(offer: Json, *tasks: Json) -> Json:
    operations = [{"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}]
    return {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations}}


async def running_task(master: Master, agent: FakeAgent, info: Json) -> Scheduler:
    """A framework with t1 RUNNING on the agent."""
    scheduler = await master.framework(subscribe_call(info))
    (offer,) = await scheduler.offers()
    assert (await scheduler.call(accept(offer, wire_command_task("t1", agent.agent_id)))).status == 202
    await agent.log.wait("RUN_TASK")
    await agent.update(scheduler.framework_id, "t1", "TASK_RUNNING")
    await scheduler.wait_update("t1", "TASK_RUNNING")
    return scheduler


def reconcile_t1(agent: FakeAgent) -> Json:
    return {
        "type": "RECONCILE",
        "reconcile": {"tasks": [{"task_id": {"value": "t1"}, "agent_id": {"value": agent.agent_id}}]},
    }


@pytest.mark.parametrize(("capabilities", "answer"), [([], "TASK_LOST"), (["PARTITION_AWARE"], "TASK_GONE")])
async def test_d37_launch_while_disconnected_is_refused_and_reconciled_as_lost(
    tmp_path: Path, capabilities: list[str], answer: str
) -> None:
    """Checklist D37: (Mesos ``DisconnectedSchedulerLaunchLost``, ``...Dropped``) on the HTTP API a launch sent while
    the framework is disconnected is refused (403), never reaches the agent, and reconciling the task after
    resubscribing answers it lost (gone, for a partition-aware framework).
    """
    async with running_master(tmp_path) as master:
        agent = await master.agent()
        info = framework_info(failover_timeout=60.0, capabilities=[{"type": c} for c in capabilities])
        scheduler = await master.framework(subscribe_call(info))
        (offer,) = await scheduler.offers()
        await scheduler.close()
        await until(lambda: not master.state.frameworks[scheduler.framework_id].connected, timeout=5)
        assert (await scheduler.call(accept(offer, wire_command_task("t1", agent.agent_id)))).status == 403
        assert agent.run_tasks() == []

        again = await master.framework(subscribe_call(info, framework_id=scheduler.framework_id))
        assert (await again.call(reconcile_t1(agent))).status == 202
        status = await again.wait_update("t1", answer)
        assert status["reason"] == "REASON_RECONCILIATION" and "uuid" not in status
        assert [s["state"] for s in again.updates("t1")] == [answer]


async def test_d38_a_lost_subscribed_reply_is_retried_without_a_spurious_failover(tmp_path: Path) -> None:
    """Checklist D38: (Mesos ``SchedulerFailoverRetriedReregistration``) the SUBSCRIBED answering a failover is lost,
    the scheduler subscribes again with the same id; it keeps its id and its task, and gets no ERROR.
    """
    async with running_master(tmp_path) as master:
        agent = await master.agent()
        info = framework_info(failover_timeout=60.0)
        first = await running_task(master, agent, info)
        body = subscribe_call(info, framework_id=first.framework_id)
        lost = await master.subscribe(body)  # the scheduler never sees this answer
        await lost.close()
        retried = await master.framework(body)
        assert retried.framework_id == first.framework_id

        assert (await retried.call(reconcile_t1(agent))).status == 202
        await retried.wait_update("t1", "TASK_RUNNING")
        await agent.update(retried.framework_id, "t1", "TASK_FINISHED")
        await retried.wait_update("t1", "TASK_FINISHED")
        assert retried.log.of("ERROR") == []
        assert agent.log.of("KILL_TASK") == [] and agent.log.of("SHUTDOWN_FRAMEWORK") == []
        state = await master.get_json("/master/state")
        assert [f["id"] for f in state["frameworks"]] == [first.framework_id] and state["completed_frameworks"] == []


class OneWayProxy:
    """A TCP relay to the master whose master-to-scheduler direction can be held (a one-way partition:
    TCP would retransmit, so what the master sent arrives after the heal)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._relays: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for relay in self._relays:
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        master_in, master_out = await asyncio.open_connection("127.0.0.1", self.port)
        relays = [asyncio.create_task(self._pipe(client_in, master_out, held=False))]
        relays.append(asyncio.create_task(self._pipe(master_in, client_out, held=True)))
        self._relays.update(relays)
        await asyncio.gather(*relays, return_exceptions=True)
        for writer in (client_out, master_out):
            writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, held: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if held:
                    await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def proxied_master(tmp_path: Path) -> AsyncIterator[tuple[Master, OneWayProxy, str]]:
    async with running_master(tmp_path) as master:
        proxy = OneWayProxy(master.server.port or 0)
        address = await proxy.start()
        try:
            yield master, proxy, address
        finally:
            await proxy.close()


async def test_d36_master_to_scheduler_partition_fails_calls_and_the_scheduler_resubscribes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checklist D36: (Mesos ``OneWayPartitionTest.MasterToScheduler``) nothing from the master reaches the scheduler;
    its calls get no answer, it misses its heartbeats and resubscribes; after the heal it is the same framework
    and its task was never touched.
    """
    for module in (butte.master.service, butte.master.frameworks):
        monkeypatch.setattr(module, "HEARTBEAT_INTERVAL_S", 0.2)  # missed after 5 x 0.2 s, not 75 s
    async with proxied_master(tmp_path) as (master, proxy, address):
        agent = await master.agent()
        info = FrameworkInfo(user="alice", name="fw", failover_timeout=60.0)
        client = SchedulerClient(address, info, initial_backoff_s=0.1, max_backoff_s=0.5, call_timeout_s=1.0)
        await client.subscribe(timeout_s=10)
        seen: list[Any] = []
        pump = asyncio.create_task(_collect(client, seen))
        try:
            offer = await until(lambda: next((e.offers.offers[0] for e in seen if _is(e, "OFFERS")), None), timeout=5)
            await client.launch(offer, [command_task("t1", agent.agent_id, "sleep 100", 0.1, 16)])
            await agent.log.wait("RUN_TASK")
            await agent.update(client.framework_id or "", "t1", "TASK_RUNNING")
            await until(lambda: _states(seen) == ["TASK_RUNNING"], timeout=5)

            framework_id = client.framework_id
            proxy.flowing.clear()
            with pytest.raises(Disconnected):
                await client.reconcile([("t1", agent.agent_id)])
            await until(lambda: any(isinstance(e, ConnectionLost) for e in seen), timeout=10, what="missed heartbeats")
            proxy.flowing.set()
            await until(lambda: sum(_is(e, "SUBSCRIBED") for e in seen) == 1, timeout=10, what="the resubscription")
            assert client.framework_id == framework_id

            await client.reconcile([("t1", agent.agent_id)])
            await until(lambda: _states(seen)[-1:] == ["TASK_RUNNING"] and len(_states(seen)) >= 2, timeout=5)
            assert set(_states(seen)) == {"TASK_RUNNING"}
            assert agent.log.of("KILL_TASK") == [] and agent.log.of("SHUTDOWN_FRAMEWORK") == []
            assert [f.id for f in master.state.frameworks.values()] == [client.framework_id]
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()


async def _collect(client: SchedulerClient, seen: list[Any]) -> None:
    async for event in client.events():
        seen.append(event)


def _is(event: Any, kind: str) -> bool:
    return isinstance(event, Event) and event.type == kind


def _states(seen: list[Any]) -> list[str]:
    return [e.update.status.state for e in seen if _is(e, "UPDATE") and e.update.status.task_id.value == "t1"]
