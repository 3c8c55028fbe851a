"""Real network partitions: an agent in its own network namespace, cut from the master and healed.

Mesos's partition tests (``PartitionedSlave``, ``ReregisterSlavePartitionAware``,
``ReregisterSlaveNotPartitionAware``): an agent that misses its pings is marked unreachable; a
PARTITION_AWARE framework is told TASK_UNREACHABLE and, after the heal, TASK_RUNNING again; any other
framework is told TASK_LOST and, after the heal, its tasks are killed so that nothing it gave up keeps
running; a task that ends behind the cut reports its end after the heal (``TaskCompletedOnPartitionedAgent``).
Each test checks the history against the processes that really ran (butte.testing.invariants).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from butte.testing.invariants import RecordingFramework, assert_sound, running_tasks, task_processes
from butte.testing.netns import Namespace, PartitionCluster, unavailable_reason
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import TaskStatus

UNAVAILABLE = unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"network namespaces unavailable: {UNAVAILABLE}"),
]

# Short timers: unreachable after 3 missed pings of 200 ms (Mesos: 5 x 15 s).
MASTER_FLAGS = {"agent_ping_timeout": "200ms", "max_agent_ping_timeouts": 3}
TASKS = 2
NO_STATUS = TaskStatus(task_id=ID(value=""), state="TASK_STAGING")


@asynccontextmanager
async def partitioned(
    tmp_path: Path, *, partition_aware: bool
) -> AsyncIterator[tuple[PartitionCluster, RecordingFramework]]:
    """A namespaced agent running TASKS sleepers of one framework, every one RUNNING."""
    with Namespace.create() as namespace:
        async with (
            PartitionCluster(namespace, tmp_path / "cluster", master_flags=MASTER_FLAGS) as cluster,
            RecordingFramework(cluster.master_address, partition_aware=partition_aware, wanted=TASKS) as framework,
        ):
            await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="the sleepers to run")
            await until(lambda: len(running_tasks(cluster.marker)) == TASKS, timeout=10, what="their processes")
            framework.history.sample(running_tasks(cluster.marker))
            yield cluster, framework


async def test_partition_aware_tasks_are_unreachable_then_running_again(tmp_path: Path) -> None:
    async with partitioned(tmp_path, partition_aware=True) as (cluster, framework):
        agent_id = framework.statuses[-1].agent_id
        assert agent_id is not None
        cluster.cut()
        await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
        for task_id in framework.history.launched:
            status = framework.latest(task_id)
            assert status is not None and status.reason == "REASON_AGENT_REMOVED"
            assert status.unreachable_time is not None and status.uuid is None
        assert agent_id.value in framework.lost_agents
        state = await cluster.master_state()
        assert state["unreachable_slaves"] == 1 and state["slaves"] == []
        (entry,) = state["frameworks"]
        assert sorted(t["id"] for t in entry["unreachable_tasks"]) == framework.history.launched
        framework.history.sample(running_tasks(cluster.marker))  # still running behind the cut

        told = len(framework.statuses)
        await framework.client.reconcile([(t, agent_id.value) for t in framework.history.launched])
        await until(lambda: len(framework.statuses) >= told + TASKS, timeout=10, what="reconciliation answers")
        assert {s.state for s in framework.statuses[told:]} == {"TASK_UNREACHABLE"}

        cluster.heal()
        await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="TASK_RUNNING after the heal")
        assert await cluster.wait_for_agent() == agent_id.value
        final = running_tasks(cluster.marker)
        assert set(final) == set(framework.history.launched)
        assert_sound(framework.history, final)


async def test_tasks_told_lost_are_killed_when_the_agent_comes_back(tmp_path: Path) -> None:
    async with partitioned(tmp_path, partition_aware=False) as (cluster, framework):
        cluster.cut()
        await until(lambda: framework.all_in("TASK_LOST"), timeout=10, what="TASK_LOST")
        lost = [framework.latest(t) for t in framework.history.launched]
        assert {s.reason for s in lost if s is not None} == {"REASON_AGENT_REMOVED"}
        framework.history.sample(running_tasks(cluster.marker))

        cluster.heal()
        await until(lambda: framework.all_in("TASK_KILLED"), timeout=30, what="TASK_KILLED after the heal")
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=10, what="the lost tasks' processes to end")
        assert_sound(framework.history, running_tasks(cluster.marker))
        states = [s.state for s in framework.statuses if s.task_id.value == "sleeper-0"]
        assert states[-2:] == ["TASK_LOST", "TASK_KILLED"] and "TASK_RUNNING" not in states[states.index("TASK_LOST") :]


async def test_a_task_that_ends_behind_the_partition_reports_its_end_after_the_heal(tmp_path: Path) -> None:
    async with partitioned(tmp_path, partition_aware=True) as (cluster, framework):
        cluster.cut()
        await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
        for pid, task_id, _ in task_processes(cluster.marker):
            if task_id == "sleeper-0":
                os.kill(pid, signal.SIGKILL)
        await until(lambda: set(running_tasks(cluster.marker)) == {"sleeper-1"}, timeout=10, what="sleeper-0 to die")

        cluster.heal()
        await until(lambda: (framework.latest("sleeper-1") or NO_STATUS).state == "TASK_RUNNING", timeout=30)
        await until(lambda: (framework.latest("sleeper-0") or NO_STATUS).state == "TASK_FAILED", timeout=30)
        assert_sound(framework.history, running_tasks(cluster.marker))
