"""Master failover with a real ZooKeeper ensemble: ``kill -9`` the leader while a framework runs tasks.

Mesos promises: a standby is elected, agents reregister with their running tasks, the framework resubscribes
with its id, reconciliation answers correctly, an update sent during the failover reaches the framework, and
no task is killed, lost or duplicated; ``butte run --master zk://...`` follows the new leader too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from butte.scheduler.zk_detector import ZkDetector
from butte.testing.process import child_environment
from butte.testing.sleepers import SleeperFramework, pid_alive, sleeper_framework, task_pids
from butte.testing.wait import until
from butte.testing.zookeeper import HaCluster, unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]


@asynccontextmanager
async def framework(zk_url: str, pid_dir: Path, wanted: int) -> AsyncIterator[SleeperFramework]:
    detector = ZkDetector(zk_url)
    try:
        # Two per offer: the sleepers spread over both agents.
        async with sleeper_framework(detector, pid_dir, wanted, name="zk-failover", per_offer=2) as sleepers:
            yield sleepers
    finally:
        await detector.close()


async def start_butte_run(ha: HaCluster, command: str) -> asyncio.subprocess.Process:
    """``butte run --master zk://...``, returned once its task is running."""
    run = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "butte.cli.main", "run", "--master", ha.zk_url, "--name", "run-zk", "--", command),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_environment(ha.marker),
    )
    assert run.stderr is not None
    seen = b""
    async with asyncio.timeout(30):
        while b"TASK_RUNNING" not in seen:
            line = await run.stderr.readline()
            assert line, f"butte run ended early: {seen.decode()}"
            seen += line
    return run


async def test_kill_9_of_the_leader_loses_no_task(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    names = [f"sleeper-{i}" for i in range(4)]
    async with (
        HaCluster(tmp_path / "ha", masters=3, agents=2, zk_session_timeout="2secs") as ha,
        framework(ha.zk_url, pid_dir, 4) as fw,
    ):
        await until(lambda: all(fw.latest(n) == "TASK_RUNNING" for n in names), timeout=30)
        await until(lambda: len(task_pids(pid_dir)) == 4, timeout=10)
        pids = task_pids(pid_dir)
        framework_id = fw.client.framework_id
        old = await ha.wait_for_leader()
        run = await start_butte_run(ha, "sleep 6; echo run-survived")

        await ha.kill_master(old)
        killed_at = time.monotonic()
        os.kill(pids["sleeper-0"], signal.SIGKILL)  # its update is sent while no master leads
        new = await ha.wait_for_leader(other_than=old, timeout_s=15)
        elected_s = time.monotonic() - killed_at
        state = await ha.wait_for_agents(timeout_s=15)
        assert elected_s < 2 + 3, f"new leader after {elected_s:.1f} s"  # session timeout + detection slack

        await until(lambda: fw.subscriptions >= 1, timeout=15, what="the framework to resubscribe")
        assert fw.client.framework_id == framework_id
        await until(lambda: fw.latest("sleeper-0") == "TASK_FAILED", timeout=15, what="the update sent in failover")

        state = await ha.state_of(new)
        ours = [f for f in state["frameworks"] if f["id"] == framework_id]
        assert len(ours) == 1 and ours[0]["active"]
        tasks = ours[0]["tasks"]
        assert sorted(t["id"] for t in tasks) == names[1:]  # each once: nothing duplicated
        assert {t["state"] for t in tasks} == {"TASK_RUNNING"}

        before = len(fw.statuses)
        await fw.client.reconcile()
        await until(lambda: len(fw.statuses) >= before + 3, timeout=10, what="implicit reconciliation")
        implicit = {s.task_id.value: s.state for s in fw.statuses[before:]}
        assert implicit == dict.fromkeys(names[1:], "TASK_RUNNING")

        before = len(fw.statuses)
        await fw.client.reconcile([(n, None) for n in names[1:]])
        await until(lambda: len(fw.statuses) >= before + 3, timeout=10, what="explicit reconciliation")
        assert {s.task_id.value: s.state for s in fw.statuses[before:]} == dict.fromkeys(names[1:], "TASK_RUNNING")
        assert all(pid_alive(pids[n]) for n in names[1:]), "a task died across the failover"

        async with asyncio.timeout(30):  # butte run followed the leader and saw its task finish
            out, err = await run.communicate()
        assert (run.returncode, out.decode().split()) == (0, ["run-survived"]), err.decode()

        await fw.client.teardown()
        await until(lambda: not any(pid_alive(pids[n]) for n in names[1:]), timeout=30)
