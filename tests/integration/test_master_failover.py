"""A master restart and a framework's failover timeout, with real processes and real tasks.

Mesos promises: restarting the master kills no task (agents reregister with what they run, the framework
resubscribes with its id and reconciles), and a disconnected framework's tasks are killed only when its
``failover_timeout`` runs out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from butte.scheduler.sdk import SchedulerClient, command_task, offer_resources
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import FrameworkInfo, Offer, TaskStatus
from butte.wire.scheduler import Event

pytestmark = [pytest.mark.integration]


class Recorder:
    """A framework that launches sleepers on the offers it gets and remembers every status it sees."""

    def __init__(self, client: SchedulerClient, pid_dir: Path, wanted: int) -> None:
        self.client = client
        self.pid_dir = pid_dir
        self.wanted = wanted
        self.launched = 0
        self.statuses: list[TaskStatus] = []
        self.subscriptions = 0

    def latest(self, task_id: str) -> str | None:
        states = [s.state for s in self.statuses if s.task_id.value == task_id]
        return states[-1] if states else None

    async def run(self) -> None:
        async for event in self.client.events():
            if not isinstance(event, Event):
                continue
            if event.type == "SUBSCRIBED":
                self.subscriptions += 1
            elif event.type == "OFFERS" and event.offers is not None:
                for offer in event.offers.offers:
                    await self._use(offer)
            elif event.type == "UPDATE" and event.update is not None:
                self.statuses.append(event.update.status)

    async def _use(self, offer: Offer) -> None:
        if self.launched >= self.wanted or offer_resources(offer).scalar("cpus") < 0.1:
            await self.client.decline([offer.id.value], refuse_seconds=60)
            return
        task_id = f"sleeper-{self.launched}"
        self.launched += 1
        pid_file = self.pid_dir / task_id
        command = f"echo $$ > {pid_file}; exec sleep 300"
        await self.client.launch(offer, [command_task(task_id, offer.agent_id.value, command, 0.1, 16)])


@asynccontextmanager
async def running_framework(
    master: str, pid_dir: Path, wanted: int, failover_timeout: float, framework_id: str | None = None
) -> AsyncIterator[Recorder]:
    info = FrameworkInfo(user=os.environ.get("USER", "root"), name="failover-test", failover_timeout=failover_timeout)
    if framework_id is not None:
        info.id = ID(value=framework_id)
    client = SchedulerClient(master, info, initial_backoff_s=0.1, max_backoff_s=0.5)
    await client.subscribe(timeout_s=30)
    recorder = Recorder(client, pid_dir, wanted)
    pump = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await client.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def task_pids(pid_dir: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in pid_dir.iterdir() if p.read_text().strip()}


async def test_master_restart_kills_no_task(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with (
        Cluster(agents=2, work_dir=tmp_path / "cluster") as cluster,
        running_framework(cluster.master_address, pid_dir, 4, failover_timeout=300) as fw,
    ):
        await until(lambda: all(fw.latest(f"sleeper-{i}") == "TASK_RUNNING" for i in range(4)), timeout=30)
        await until(lambda: len(task_pids(pid_dir)) == 4, timeout=10)
        pids = task_pids(pid_dir)

        await cluster.kill_master()
        await cluster.restart_master()  # waits for both agents to reregister

        state = await cluster.master_state()
        tasks = [t for f in state["frameworks"] for t in f["tasks"]]
        assert sorted(t["id"] for t in tasks) == [f"sleeper-{i}" for i in range(4)]
        assert {t["state"] for t in tasks} == {"TASK_RUNNING"}

        await until(lambda: fw.subscriptions >= 1, timeout=30, what="the framework to resubscribe")
        before = len(fw.statuses)
        await fw.client.reconcile()
        await until(lambda: len(fw.statuses) >= before + 4, timeout=10, what="implicit reconciliation")
        answers = {s.task_id.value: s for s in fw.statuses[before:]}
        assert {s.state for s in answers.values()} == {"TASK_RUNNING"}
        assert all(s.reason == "REASON_RECONCILIATION" and s.uuid is None for s in answers.values())
        assert all(pid_alive(pid) for pid in pids.values()), "a task died across the master restart"

        await fw.client.teardown()
        await until(lambda: not any(pid_alive(pid) for pid in pids.values()), timeout=30)


async def test_tasks_survive_a_reconnect_within_the_failover_timeout(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        async with running_framework(cluster.master_address, pid_dir, 1, failover_timeout=60) as fw:
            await until(lambda: fw.latest("sleeper-0") == "TASK_RUNNING", timeout=30)
            framework_id = fw.client.framework_id
        # The first client is gone without TEARDOWN; a new one takes over with the same id.
        async with running_framework(cluster.master_address, pid_dir, 0, 60, framework_id) as again:
            await again.client.reconcile([("sleeper-0", None)])
            await until(lambda: again.latest("sleeper-0") == "TASK_RUNNING", timeout=10)
            assert pid_alive(task_pids(pid_dir)["sleeper-0"])
            await again.client.teardown()


async def test_tasks_are_killed_when_the_failover_timeout_runs_out(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        async with running_framework(cluster.master_address, pid_dir, 1, failover_timeout=1.0) as fw:
            await until(lambda: fw.latest("sleeper-0") == "TASK_RUNNING", timeout=30)
            await until(lambda: "sleeper-0" in task_pids(pid_dir), timeout=10)
            framework_id = fw.client.framework_id
        pid = task_pids(pid_dir)["sleeper-0"]
        await until(lambda: not pid_alive(pid), timeout=30, what="the task to be killed after failover_timeout")

        async def completed() -> bool:
            state = await cluster.master_state()
            return any(f["id"] == framework_id for f in state["completed_frameworks"])

        await until(completed, timeout=10)
