"""A master restart and a framework's failover timeout, with real processes and real tasks.

Mesos promises: restarting the master kills no task (agents reregister with what they run, the framework
resubscribes with its id and reconciles), and a disconnected framework's tasks are killed only when its
``failover_timeout`` runs out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from butte.testing.cluster import Cluster
from butte.testing.sleepers import pid_alive, sleeper_framework, task_pids
from butte.testing.wait import until

pytestmark = [pytest.mark.integration]


async def test_master_restart_kills_no_task(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with (
        Cluster(agents=2, work_dir=tmp_path / "cluster") as cluster,
        sleeper_framework(cluster.master_address, pid_dir, 4, failover_timeout=300) as fw,
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
        async with sleeper_framework(cluster.master_address, pid_dir, 1, failover_timeout=60) as fw:
            await until(lambda: fw.latest("sleeper-0") == "TASK_RUNNING", timeout=30)
            framework_id = fw.client.framework_id
        # The first client is gone without TEARDOWN; a new one takes over with the same id.
        async with sleeper_framework(
            cluster.master_address, pid_dir, 0, failover_timeout=60, framework_id=framework_id
        ) as again:
            await again.client.reconcile([("sleeper-0", None)])
            await until(lambda: again.latest("sleeper-0") == "TASK_RUNNING", timeout=10)
            assert pid_alive(task_pids(pid_dir)["sleeper-0"])
            await again.client.teardown()


async def test_tasks_are_killed_when_the_failover_timeout_runs_out(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        async with sleeper_framework(cluster.master_address, pid_dir, 1, failover_timeout=1.0) as fw:
            await until(lambda: fw.latest("sleeper-0") == "TASK_RUNNING", timeout=30)
            await until(lambda: "sleeper-0" in task_pids(pid_dir), timeout=10)
            framework_id = fw.client.framework_id
        pid = task_pids(pid_dir)["sleeper-0"]
        await until(lambda: not pid_alive(pid), timeout=30, what="the task to be killed after failover_timeout")

        async def completed() -> bool:
            state = await cluster.master_state()
            return any(f["id"] == framework_id for f in state["completed_frameworks"])

        await until(completed, timeout=10)
