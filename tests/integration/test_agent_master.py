"""A real ``butte master`` and real ``butte agent`` processes: registration, reregistration, shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from butte.testing.cluster import Cluster

pytestmark = pytest.mark.integration


async def test_agent_registers_with_the_master(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path, agent_attributes="rack:a") as cluster:
        [slave] = await cluster.wait_for_agents(1)
        assert slave["port"] == cluster.agent(0).port
        assert slave["resources"]["cpus"] == 4.0
        assert slave["attributes"] == {"rack": "a"}
        state = await cluster.get_json("/state", base_url=cluster.agent(0).url)
        assert state["id"] == slave["id"]


async def test_agent_reregisters_after_a_master_restart(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster:
        [before] = await cluster.wait_for_agents(1)
        await cluster.restart_master()
        [after] = await cluster.wait_for_agents(1)
        assert after["id"] == before["id"]


async def test_sigterm_stops_the_agent_cleanly(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster:
        await cluster.wait_for_agents(1)
        agent = cluster.agent(0)
        agent.send_signal(signal.SIGTERM)
        assert await agent.wait_exit(10) == 0
        assert "Agent stopped" in agent.log_tail()


async def test_a_command_task_runs_end_to_end(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster:
        command = [sys.executable, "-m", "butte.cli.main", "run", f"--master={cluster.master_address}"]
        process = await asyncio.create_subprocess_exec(
            *command,
            "--",
            "echo hello from $MESOS_TASK_ID; exit 3",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 3, stderr.decode()
        assert "hello from butte-run" in stdout.decode()
        for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"):
            assert state in stderr.decode()
