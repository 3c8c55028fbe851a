"""The agent's master link against a scripted master: refusals, silence, bad events, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from test_agent_service import FakeMaster, command_task, make_config, master, run_task

from butte.agent.service import Agent
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.agent_link import AgentEvent

__all__ = ["master"]  # the fixture pytest finds by name


async def test_registration_is_retried_with_backoff_until_the_master_takes_it(
    master: tuple[FakeMaster, str], tmp_path: Path
) -> None:
    fake, address = master
    fake.refuse_registrations = 3
    agent = Agent(make_config(address, tmp_path, registration_backoff_factor_s=0.02))
    await agent.start()
    try:
        await until(lambda: agent.agent_info.id is not None, timeout=10)
        assert len(fake.registrations) == 4
        assert all(call.type == "REGISTER" for call in fake.registrations)
    finally:
        await agent.stop()


async def test_a_silent_master_is_left_after_five_ping_intervals(
    master: tuple[FakeMaster, str], tmp_path: Path
) -> None:
    fake, address = master
    fake.ping_interval_s = 0.1
    agent = Agent(make_config(address, tmp_path))
    await agent.start()
    try:
        await until(lambda: len(fake.registrations) >= 2, timeout=10)
        assert fake.registrations[1].type == "REREGISTER"
    finally:
        await agent.stop()


async def test_an_event_that_does_not_parse_is_skipped(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    fake.raw_records = [b'{"type":"NO_SUCH_EVENT"}', b"not json"]
    agent = Agent(make_config(address, tmp_path))
    await agent.start()
    try:
        await until(lambda: agent.agent_info.id is not None)
        fake.send(AgentEvent(type="PING"))
        await until(lambda: any(call.type == "PONG" for call in fake.calls))
        assert len(fake.registrations) == 1  # the stream survived
    finally:
        await agent.stop()


async def test_snapshot_counts_what_the_agent_holds(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    agent = Agent(make_config(address, tmp_path))
    await agent.start()
    try:
        await until(lambda: agent.snapshot().connected)
        fake.auto_ack = False
        fake.send(run_task(command_task("snap", "sleep 60")))
        await until(lambda: agent.snapshot().live_tasks == 1)
        snapshot = agent.snapshot()
        assert (snapshot.agent_id, snapshot.frameworks, snapshot.executors) == ("M-S0", 1, 1)
        await until(lambda: agent.snapshot().pending_updates >= 2)  # nothing is acknowledged
    finally:
        await agent.stop()


@pytest.mark.integration
async def test_sigterm_kills_the_tasks_of_a_real_agent(tmp_path: Path) -> None:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster:
        await cluster.wait_for_agents(1)
        agent = cluster.agent(0)
        command = ["-m", "butte.cli.main", "run", f"--master={cluster.master_address}", "--name=long"]
        runner = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "--",
            "echo $$ > pid; exec sleep 60",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        def pid_files() -> list[Path]:
            return list(agent.work_dir.glob("slaves/*/frameworks/*/executors/long/runs/latest/pid"))

        await until(lambda: pid_files() and pid_files()[0].read_text().strip(), timeout=30)
        pid = int(pid_files()[0].read_text())
        agent.send_signal(signal.SIGTERM)
        assert await agent.wait_exit(15) == 0
        assert not Path(f"/proc/{pid}").exists() or ") Z" in Path(f"/proc/{pid}/stat").read_text()
        runner.kill()
        await runner.wait()
