"""The test kit itself: polling helpers, process sweeping, and a real cluster's start/kill/restart/teardown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.testing import Cluster, ProcessError, SyncCluster, WaitTimeout, until
from butte.testing import process as proc
from butte.testing.pytest_plugin import ClusterFactory, skip_without_services
from butte.testing.wait import states_of, until_task_state, until_task_states

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

# -- wait helpers (no cluster) ---------------------------------------------------------------------


async def test_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "", "ready"])
    assert await until(lambda: next(calls), interval=0.001) == "ready"


async def test_until_awaits_async_predicates() -> None:
    attempts: list[int] = []

    async def third_time() -> bool:
        attempts.append(1)
        return len(attempts) >= 3

    assert await until(third_time, interval=0.001) is True


async def test_until_times_out_saying_what_it_awaited() -> None:
    with pytest.raises(WaitTimeout, match=r"timed out after 0.05 s waiting for the moon .*last value: 0"):
        await until(lambda: 0, timeout=0.05, interval=0.01, what="the moon")


async def test_until_ignores_listed_errors_and_reports_the_last() -> None:
    def refuse() -> bool:
        raise ConnectionRefusedError("not yet")

    with pytest.raises(WaitTimeout, match="ConnectionRefusedError: not yet"):
        await until(refuse, timeout=0.05, interval=0.01, ignore=(OSError,))


async def test_until_lets_other_errors_through() -> None:
    def broken() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await until(broken, timeout=1, ignore=(OSError,))


def update(task_id: str, state: str) -> dict[str, object]:
    return {"task_id": {"value": task_id}, "state": state, "agent_id": {"value": "a"}}


async def test_task_state_helpers_follow_an_update_list() -> None:
    updates = [update("t1", "TASK_STARTING"), update("t2", "TASK_RUNNING")]

    async def deliver_later() -> None:
        await asyncio.sleep(0)
        updates.extend([update("t1", "TASK_RUNNING"), update("t1", "TASK_FINISHED")])

    delivery = asyncio.create_task(deliver_later())
    seen = await until_task_states(updates, "t1", ["TASK_RUNNING", "TASK_FINISHED"], timeout=5)
    await delivery
    assert seen == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert await until_task_state(updates, "t2", "TASK_RUNNING") == updates[1]
    assert states_of(updates, "t2") == ["TASK_RUNNING"]


async def test_task_state_timeout_lists_the_states_seen() -> None:
    updates = [update("t1", "TASK_RUNNING")]
    with pytest.raises(WaitTimeout, match=r"task t1 to reach TASK_FINISHED.*\['TASK_RUNNING'\]"):
        await until_task_state(updates, "t1", "TASK_FINISHED", timeout=0.05)


# -- process sweeping (no cluster) -----------------------------------------------------------------


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        proc.terminate(child, grace_s=1)


async def test_leftovers_are_found_by_marker_or_sandbox_and_killed(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    sandbox = tmp_path / "agent-0" / "slaves" / "s1"
    sandbox.mkdir(parents=True)
    marked = subprocess.Popen(SLEEPER, env={**os.environ, proc.MARKER_ENV: "m1"})
    in_sandbox = subprocess.Popen(SLEEPER, cwd=sandbox)
    unrelated = subprocess.Popen(SLEEPER, cwd=tmp_path)
    spawned.extend([marked, in_sandbox, unrelated])

    found = proc.leftover_pids("m1", [tmp_path / "agent-0"])
    assert sorted(found) == sorted([marked.pid, in_sandbox.pid])

    proc.kill_pids(found)
    await until(lambda: marked.poll() is not None and in_sandbox.poll() is not None, timeout=5)
    assert unrelated.poll() is None


# -- a real cluster ----------------------------------------------------------------------------------


def assert_all_gone(pids: list[int]) -> None:
    alive = [pid for pid in pids if proc.is_alive(pid)]
    assert not alive, f"still running after teardown: {alive}"


async def test_start_lists_agents_and_teardown_leaves_nothing(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(agents=2)
    async with cluster:
        slaves = await cluster.wait_for_agents(2)
        assert {slave["port"] for slave in slaves} == {agent.port for agent in cluster.agents}
        assert cluster.master_url == f"http://{cluster.master_address}"
        assert all(agent.address == f"127.0.0.1:{agent.port}" for agent in cluster.agents)
        assert cluster.master.log_path.exists() and cluster.agents[0].log_path.exists()
        pids = [p.pid for p in [cluster.master, *cluster.agents] if p.pid is not None]
        # A task that outlives its agent, as Mesos tasks do: teardown must sweep it up.
        sandbox = cluster.agents[0].work_dir / "slaves" / "fake-task"
        sandbox.mkdir(parents=True)
        task = subprocess.Popen(SLEEPER, cwd=sandbox, start_new_session=True)
        pids.append(task.pid)
    task.wait(timeout=5)
    assert_all_gone(pids)
    assert proc.leftover_pids(cluster.marker, [a.work_dir for a in cluster.agents]) == []


async def test_master_kill_and_restart(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(agents=2) as cluster:
        old_pid = cluster.master.pid
        await cluster.kill_master(signal.SIGKILL)
        assert cluster.master.returncode == -signal.SIGKILL
        await cluster.restart_master()
        assert cluster.master.pid != old_pid
        state = await cluster.master_state()
        active_ports = {s["port"] for s in state["slaves"] if s.get("active", True)}
        assert active_ports == {agent.port for agent in cluster.agents}


async def test_agent_kill_and_restart(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(agents=2) as cluster:
        agent = cluster.agents[1]
        old_pid = agent.pid
        await cluster.kill_agent(1)
        assert not agent.running
        await cluster.restart_agent(1)
        assert agent.running and agent.pid != old_pid
        await cluster.wait_for_agents(2)
        await cluster.kill_agent(0, signal.SIGTERM)
        assert cluster.agents[0].returncode is not None


async def test_a_master_that_cannot_start_is_reported_with_its_log(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(agents=1, master_flags={"allocation_interval": "not-a-duration"})
    with pytest.raises(ProcessError, match=r"(?s)master exited with status 2.*master\.log.*allocation_interval"):
        await cluster.start()
    assert not cluster.master.running


@pytest.mark.cluster(agents=1)
async def test_the_cluster_fixture(cluster: Cluster) -> None:
    assert len(cluster.agents) == 1
    assert len((await cluster.master_state())["slaves"]) == 1


def test_sync_cluster(tmp_path: Path) -> None:
    skip_without_services()
    with SyncCluster(agents=1, work_dir=tmp_path) as cluster:
        assert len(cluster.wait_for_agents(1)) == 1
        cluster.kill_agent(0)
        cluster.restart_agent(0)
        pids = [p.pid for p in [cluster.cluster.master, *cluster.agents] if p.pid is not None]
    assert_all_gone(pids)
