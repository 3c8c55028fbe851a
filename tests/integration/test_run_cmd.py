"""``butte run`` as a real process against a real local cluster."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from butte.testing.cluster import Cluster
from butte.testing.process import child_environment

pytestmark = [pytest.mark.integration, pytest.mark.cluster(agents=1)]


async def start_run(cluster: Cluster, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "butte.cli.main",
        "run",
        "--master",
        cluster.master_address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_environment(cluster.marker),
    )


async def test_prints_output_and_exits_with_the_task_status(cluster: Cluster) -> None:
    run = await start_run(cluster, "--name", "hi", "--", "/bin/sh", "-c", "echo hi; exit 3")
    async with asyncio.timeout(60):
        out, err = await run.communicate()
    assert run.returncode == 3, err.decode()
    assert out.decode().splitlines() == ["hi"]
    assert "Received status update TASK_FAILED for task 'hi'" in err.decode()


async def test_shell_string_and_success(cluster: Cluster) -> None:
    run = await start_run(cluster, "--env", "WHO=world", "--", "echo hello $WHO")
    async with asyncio.timeout(60):
        out, err = await run.communicate()
    assert run.returncode == 0, err.decode()
    assert "hello world" in out.decode()


async def read_until_running(run: asyncio.subprocess.Process) -> bytes:
    """What ``butte run`` printed on stderr up to its TASK_RUNNING line."""
    assert run.stderr is not None
    seen = b""
    async with asyncio.timeout(60):
        while b"TASK_RUNNING" not in seen:
            line = await run.stderr.readline()
            assert line, f"butte run ended early: {seen.decode()}"
            seen += line
    return seen


async def test_interrupt_kills_the_task_and_tears_down(cluster: Cluster) -> None:
    run = await start_run(cluster, "--name", "sleeper", "--", "sleep 60")
    assert run.stderr is not None
    seen = await read_until_running(run)
    async with asyncio.timeout(60):
        run.send_signal(signal.SIGINT)
        rest = await run.stderr.read()
        await run.wait()
    err = (seen + rest).decode()
    assert "Received status update TASK_KILLED for task 'sleeper'" in err, err
    assert run.returncode != 0
    state = await cluster.master_state()
    assert state["frameworks"] == []


async def test_sigterm_ends_it_even_when_the_master_is_gone(cluster: Cluster) -> None:
    run = await start_run(cluster, "--name", "orphan", "--", "sleep 60")
    assert run.stderr is not None
    await read_until_running(run)
    await cluster.kill_master()
    run.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):  # no waiting for a TASK_KILLED that cannot come, no endless resubscribing
        rest = await run.stderr.read()
        await run.wait()
    assert run.returncode != 0
    assert "Could not kill the task" in rest.decode()
