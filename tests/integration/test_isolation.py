"""Isolation on a real cluster: cgroups v1 limits, a pid namespace, memory limitations, the posix fallback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from butte.containerizer.isolators import detect_cgroups
from butte.scheduler.sdk import SchedulerClient
from butte.scheduler.tasks import command_task
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.mesos import ExecutorInfo, FrameworkInfo, TaskStatus
from butte.wire.scheduler import Event

pytestmark = pytest.mark.integration

ISOLATED = "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid"
# Writes 200 MB for real (b"x" * n touches every page; bytearray(n) would not).
HOG = f"{sys.executable} -c 'x = b\"x\" * (200 * 1024 * 1024); import time; time.sleep(60)'"


def v1_memory_writable() -> str | None:
    """Why cgroup v1 memory tests cannot run here, or None."""
    layout = detect_cgroups()
    if os.geteuid() != 0:
        return "needs root to write cgroups"
    if "memory" not in layout.v1 or "cpu" not in layout.v1:
        return "no cgroup v1 cpu and memory hierarchies on this host"
    if "memory" in layout.v2_controllers:
        return "memory is on cgroup v2 here (the v2 path is used instead)"
    return None


needs_v1 = pytest.mark.skipif(v1_memory_writable() is not None, reason=str(v1_memory_writable()))


class Framework:
    """Launches tasks on the first offers it gets and keeps every status update."""

    def __init__(self, master: str, checkpoint: bool = False, user: str = "root") -> None:
        info = FrameworkInfo(user=user, name="iso", checkpoint=checkpoint)
        self.client = SchedulerClient(master, info, auto_acknowledge=True)
        self.updates: list[TaskStatus] = []
        self.pending: list[tuple[str, str, float, float]] = []
        self.pending_groups: list[tuple[ExecutorInfo, list[tuple[str, str, float, float]]]] = []
        self.agent_id = ""
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.subscribe()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def launch(self, task_id: str, command: str, cpus: float = 0.5, mem: float = 64.0) -> None:
        self.pending.append((task_id, command, cpus, mem))

    def launch_group(self, executor: ExecutorInfo, tasks: list[tuple[str, str, float, float]]) -> None:
        """Launch ``tasks`` (id, command, cpus, mem) as one task group under the default ``executor``."""
        self.pending_groups.append((executor, tasks))

    async def _run(self) -> None:
        async for event in self.client.events():
            if not isinstance(event, Event):
                continue
            if event.type == "OFFERS" and event.offers is not None:
                for offer in event.offers.offers:
                    self.agent_id = offer.agent_id.value
                    tasks = [command_task(t, self.agent_id, c, cpus, mem) for t, c, cpus, mem in self.pending]
                    self.pending.clear()
                    if self.pending_groups:
                        executor, group = self.pending_groups.pop(0)
                        group_tasks = [command_task(t, self.agent_id, c, cpus, mem) for t, c, cpus, mem in group]
                        await self.client.launch_group(offer, executor, group_tasks, refuse_seconds=0.1)
                        continue
                    await self.client.launch(offer, tasks, refuse_seconds=0.1)
            elif event.type == "UPDATE" and event.update is not None:
                self.updates.append(event.update.status)

    def last(self, task_id: str) -> TaskStatus | None:
        mine = [status for status in self.updates if status.task_id.value == task_id]
        return mine[-1] if mine else None

    async def until_state(self, task_id: str, states: Sequence[str], timeout: float = 20.0) -> TaskStatus:
        def reached() -> TaskStatus | None:
            status = self.last(task_id)
            return status if status is not None and status.state in states else None

        return await until(reached, timeout=timeout, what=f"{task_id} in {states}")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        await self.client.close()


@pytest.fixture
async def isolated(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Framework]]:
    flags = {"isolation": ISOLATED, "cgroups_enable_cfs": "true", "cgroups_root": f"butte-test-{os.getpid()}"}
    async with Cluster(agents=1, work_dir=tmp_path, agent_flags=flags) as cluster:
        await cluster.wait_for_agents(1)
        framework = Framework(cluster.master_address)
        await framework.start()
        yield cluster, framework
        await framework.stop()
    remove_cgroups_root(flags["cgroups_root"])


def remove_cgroups_root(name: str) -> None:
    """The agent leaves ``--cgroups_root`` in place (as Mesos); a test's own root goes once its cluster has."""
    layout = detect_cgroups()
    for directory in {*layout.v1.values(), *([layout.v2] if layout.v2 else [])}:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(directory, name))


def sandbox(cluster: Cluster, task_id: str) -> Path:
    runs = cluster.agent(0).work_dir.glob(f"slaves/*/frameworks/*/executors/{task_id}/runs/*")
    [found] = [run for run in runs if run.name != "latest"]
    return found


def container_cgroup(controller: str, cluster: Cluster, task_id: str) -> Path:
    layout = detect_cgroups()
    root = f"butte-test-{os.getpid()}"
    return Path(layout.v1[controller]) / root / sandbox(cluster, task_id).name


@needs_v1
async def test_task_gets_cgroup_limits_and_its_own_pid_namespace(isolated: tuple[Cluster, Framework]) -> None:
    cluster, framework = isolated
    framework.launch("probe", "echo $$ > pid; ls /proc | grep -c '^[0-9]' > procs; sleep 60", cpus=0.5, mem=64)
    await framework.until_state("probe", ["TASK_RUNNING"])
    box = await until(lambda: sandbox(cluster, "probe") if (sandbox(cluster, "probe") / "procs").exists() else None)
    await until(lambda: (box / "procs").read_text().strip() != "", what="procs written")
    assert int((box / "pid").read_text()) <= 2  # the namespace's init (pid 1) runs the task, or is it
    assert int((box / "procs").read_text()) <= 5  # init, sh, ls, grep: the host's processes are not visible
    memory = container_cgroup("memory", cluster, "probe")
    cpu = container_cgroup("cpu", cluster, "probe")
    assert int((memory / "memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
    assert int((cpu / "cpu.shares").read_text()) == 512
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50_000
    for controller in ("cpu", "cpuacct", "memory", "pids"):  # the task joined every hierarchy
        assert (container_cgroup(controller, cluster, "probe") / "cgroup.procs").read_text().split()
    await until(lambda: f"Isolation: {ISOLATED} " in cluster.agent(0).log_tail(), what="the isolation logged")


@needs_v1
async def test_kill_ends_everything_in_the_container_and_removes_its_cgroups(
    isolated: tuple[Cluster, Framework],
) -> None:
    cluster, framework = isolated
    # A grandchild that leaves the session (setsid) and the group: only the container can find it.
    framework.launch("escaper", "setsid sh -c 'sleep 1000 & sleep 1000' & sleep 1000", cpus=0.2, mem=64)
    await framework.until_state("escaper", ["TASK_RUNNING"])
    memory = await until(lambda: container_cgroup("memory", cluster, "escaper"))
    pids = await until(
        lambda: (
            [int(p) for p in (memory / "cgroup.procs").read_text().split()]
            if len((memory / "cgroup.procs").read_text().split()) >= 5
            else None
        ),
        what="every process in the cgroup",
    )
    await framework.client.kill("escaper", framework.agent_id)
    await framework.until_state("escaper", ["TASK_KILLED"])
    await until(lambda: not memory.exists(), what="the container's memory cgroup removed")
    await until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), what="every process dead")


@needs_v1
async def test_memory_hog_fails_with_the_limitation_and_spares_its_neighbour(
    isolated: tuple[Cluster, Framework],
) -> None:
    _, framework = isolated
    framework.launch("neighbour", "sleep 60", cpus=0.1, mem=32)
    framework.launch("hog", HOG, cpus=0.1, mem=64)
    failed = await framework.until_state("hog", ["TASK_FAILED", "TASK_FINISHED", "TASK_KILLED"])
    assert failed.state == "TASK_FAILED"
    assert failed.reason == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert failed.source == "SOURCE_AGENT"
    assert failed.message is not None and failed.message.startswith("Memory limit exceeded: Requested: 64MB")
    neighbour = framework.last("neighbour")
    assert neighbour is not None and neighbour.state == "TASK_RUNNING"


async def test_posix_isolation_enforces_memory_by_polling(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster:  # the default: posix/cpu,posix/mem
        await cluster.wait_for_agents(1)
        framework = Framework(cluster.master_address)
        await framework.start()
        try:
            framework.launch("hog", HOG, cpus=0.1, mem=48)
            failed = await framework.until_state("hog", ["TASK_FAILED", "TASK_FINISHED", "TASK_KILLED"])
            assert failed.reason == "REASON_CONTAINER_LIMITATION_MEMORY", failed
            assert failed.message is not None and "Requested: 48MB" in failed.message
            await until(lambda: "Isolation: posix/cpu,posix/mem " in cluster.agent(0).log_tail(), what="logged")
        finally:
            await framework.stop()


@needs_v1
async def test_a_recovered_container_is_released_when_its_task_ends(tmp_path: Path) -> None:
    flags = {"isolation": ISOLATED, "cgroups_root": f"butte-test-{os.getpid()}"}
    async with Cluster(agents=1, work_dir=tmp_path, agent_flags=flags) as cluster:
        await cluster.wait_for_agents(1)
        framework = Framework(cluster.master_address, checkpoint=True)
        await framework.start()
        try:
            framework.launch("survivor", "sleep 1000", cpus=0.1, mem=32)
            await framework.until_state("survivor", ["TASK_RUNNING"])
            memory = await until(lambda: container_cgroup("memory", cluster, "survivor"))
            cluster.agent(0).send_signal(signal.SIGKILL)
            await cluster.agent(0).wait_exit(10)
            await cluster.restart_agent(0)
            assert (memory / "cgroup.procs").read_text().split()  # the task ran on untouched
            await framework.client.kill("survivor", framework.agent_id)
            await framework.until_state("survivor", ["TASK_KILLED"])
            await until(lambda: not memory.exists(), what="the recovered container's cgroup removed")
        finally:
            await framework.stop()
    remove_cgroups_root(flags["cgroups_root"])


@needs_v1
async def test_a_task_of_another_user_joins_its_cgroups_then_runs_as_that_user(
    isolated: tuple[Cluster, Framework],
) -> None:
    cluster, _ = isolated
    nobody = Framework(cluster.master_address, user="nobody")
    await nobody.start()
    try:
        nobody.launch("as-nobody", "id -u > uid; sleep 60", cpus=0.1, mem=32)
        await nobody.until_state("as-nobody", ["TASK_RUNNING"])
        uid = await until(lambda: (sandbox(cluster, "as-nobody") / "uid").read_text().strip(), ignore=(OSError,))
        assert int(uid) == pwd.getpwnam("nobody").pw_uid
        assert (container_cgroup("memory", cluster, "as-nobody") / "cgroup.procs").read_text().split()
    finally:
        await nobody.stop()
