"""Resource usage on a live agent: ``/monitor/statistics`` and GET_CONTAINERS read from the container's cgroups.

The agent runs in this process against a real master, so the test can pick its cgroups root.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_isolation import ISOLATED, Framework, remove_cgroups_root, v1_memory_writable

from butte.agent.config import AgentConfig
from butte.agent.service import Agent
from butte.core.resources import Resources
from butte.testing.cluster import Cluster
from butte.testing.wait import until

pytestmark = pytest.mark.integration


async def start_agent(master: str, work_dir: Path, isolation: str) -> Agent:
    root = f"butte-monitor-{os.getpid()}"
    config = AgentConfig(
        master=master,
        work_dir=str(work_dir),
        resources=Resources.parse("cpus:4;mem:4096;disk:1000;ports:[31000-31100]"),
        port=0,
        isolation=isolation,
        cgroups_root=root,
    )
    agent = Agent(config)
    await agent.start()
    return agent


@pytest.fixture(params=["cgroups", "posix"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Framework, str]]:
    if request.param == "cgroups" and v1_memory_writable() is not None:
        pytest.skip(str(v1_memory_writable()))
    isolation = ISOLATED if request.param == "cgroups" else "posix/cpu,posix/mem"
    async with Cluster(agents=0, work_dir=tmp_path / "cluster") as cluster:
        agent = await start_agent(cluster.master_address, tmp_path / "agent", isolation)
        framework = Framework(cluster.master_address)
        try:
            await framework.start()
            yield f"http://127.0.0.1:{agent.agent_info.port}", framework, request.param
        finally:
            await framework.stop()
            await agent.stop()
    remove_cgroups_root(f"butte-monitor-{os.getpid()}")


async def test_statistics_and_get_containers_report_a_busy_task(running: tuple[str, Framework, str]) -> None:
    url, framework, _ = running
    framework.launch("busy", "x=0; while [ $x -lt 20000 ]; do x=$((x+1)); done; sleep 60", cpus=0.5, mem=64)
    await framework.until_state("busy", ["TASK_RUNNING"])
    async with aiohttp.ClientSession() as session:

        async def busy_statistics() -> dict[str, Any] | None:
            async with session.get(f"{url}/monitor/statistics") as response:
                entries = await response.json()
            found = [entry for entry in entries if entry["executor_id"] == "busy"]
            stats = found[0]["statistics"] if found else {}
            # The kernel folds a memory cgroup's per-cpu counts into memory.stat every few seconds.
            return found[0] if stats.get("cpus_user_time_secs", 0) > 0 and stats.get("mem_rss_bytes", 0) > 0 else None

        entry = await until(busy_statistics, timeout=20, what="cpu time and memory of the busy task")
        stats = entry["statistics"]
        assert entry["source"] == "busy" and entry["executor_name"] == "Command Executor (Task: busy)"
        assert stats["cpus_limit"] == 0.5 and stats["mem_limit_bytes"] == 64 * 1024 * 1024
        assert stats["mem_rss_bytes"] > 0 and stats["timestamp"] > 0
        async with session.post(f"{url}/api/v1", json={"type": "GET_CONTAINERS"}) as response:
            containers = (await response.json())["get_containers"]["containers"]
        [container] = [c for c in containers if c["executor_id"]["value"] == "busy"]
        assert container["resource_statistics"]["mem_limit_bytes"] == 64 * 1024 * 1024
        assert container["resource_statistics"]["cpus_user_time_secs"] >= stats["cpus_user_time_secs"]
        assert len(container["container_id"]["value"]) == 36
