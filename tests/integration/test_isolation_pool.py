"""Recycled cgroups on a real cluster (cgroup v1, no CFS quota: the agent pools its containers' cgroups).

Each task still runs in cgroups named by its own container; a finished task's cgroups wait, renamed, for the
next task; a task group's container stays whole until its last task ends; a stopped agent leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_isolation import Framework, needs_v1, remove_cgroups_root, sandbox

from butte.containerizer.isolators import detect_cgroups
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.mesos import ID, ExecutorInfo

pytestmark = [pytest.mark.integration, needs_v1]

ROOT = f"butte-pool-{os.getpid()}"
FLAGS = {"isolation": "cgroups/cpu,cgroups/mem,namespaces/pid", "cgroups_root": ROOT}


def memory_root() -> Path:
    return Path(detect_cgroups().v1["memory"]) / ROOT


def subgroups(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir()) if root.exists() else []


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Framework]]:
    async with Cluster(agents=1, work_dir=tmp_path, agent_flags=FLAGS) as cluster:
        await cluster.wait_for_agents(1)
        framework = Framework(cluster.master_address)
        await framework.start()
        try:
            yield cluster, framework
        finally:
            await framework.stop()
    assert subgroups(memory_root()) == []  # the stopped agent removed its idle cgroups
    remove_cgroups_root(ROOT)


async def test_tasks_one_after_another_run_in_their_own_named_cgroups_recycled_between_them(
    pooled: tuple[Cluster, Framework],
) -> None:
    cluster, framework = pooled
    for task_id in ("first", "second", "third"):
        framework.launch(task_id, "cat /proc/self/cgroup", cpus=0.1, mem=64)
        await framework.until_state(task_id, ["TASK_FINISHED"])
        box = sandbox(cluster, task_id)
        memory_line = next(line for line in (box / "stdout").read_text().splitlines() if ":memory:" in line)
        assert memory_line.endswith(f"/{ROOT}/{box.name}")  # its cgroup is named by its container
        # Gone under its own name once it has ended, kept for the next task: one idle cgroup, reused each time.
        await until(lambda: subgroups(memory_root()) == [f"idle-{box.name}"], what="its cgroup recycled")  # noqa: B023


async def test_a_task_group_keeps_its_cgroups_until_its_last_task_ends(pooled: tuple[Cluster, Framework]) -> None:
    cluster, framework = pooled
    executor = ExecutorInfo(executor_id=ID(value="group"), type="DEFAULT")
    waiting = "while [ ! -e go ]; do sleep 0.05; done; cat /proc/self/cgroup"
    framework.launch_group(executor, [("quick", "true", 0.1, 32.0), ("slow", waiting, 0.1, 32.0)])
    await framework.until_state("quick", ["TASK_FINISHED"])
    await framework.until_state("slow", ["TASK_RUNNING"])
    runs = cluster.agent(0).work_dir.glob("slaves/*/frameworks/*/executors/group/runs/*")
    [group_box] = [run for run in runs if run.name != "latest"]
    container = memory_root() / group_box.name
    assert (container / "cgroup.procs").read_text().split()  # the slow task still runs in the group's cgroup
    (group_box / "tasks" / "slow" / "go").touch()
    await framework.until_state("slow", ["TASK_FINISHED"])
    assert f"/{ROOT}/{group_box.name}" in (group_box / "tasks" / "slow" / "stdout").read_text()
    await until(lambda: not container.exists(), what="the group's cgroups removed once it ended")
