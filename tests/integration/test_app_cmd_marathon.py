"""``butte app`` against a real ``butte marathon``: deploy from YAML, follow, scale, list, restart, remove."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonKit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def marathon(tmp_path: Path) -> AsyncIterator[MarathonKit]:
    async with Cluster(agents=2, work_dir=tmp_path / "cluster") as cluster, MarathonKit(cluster) as kit:
        yield kit


async def butte_app(marathon: MarathonKit, *args: str) -> tuple[int, str]:
    """Run ``butte app ...`` as a real process; returns (exit code, stdout+stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "butte.cli.main",
        "app",
        *args,
        "--marathon",
        marathon.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_deploy_follow_scale_restart_and_remove(marathon: MarathonKit, tmp_path: Path) -> None:
    definition = tmp_path / "web.yaml"
    definition.write_text("id: /web\ncmd: sleep 300\ncpus: 0.1\nmem: 32\ninstances: 2\n")

    code, output = await butte_app(marathon, "deploy", str(definition), "--timeout", "60")
    assert code == 0, output
    assert (await marathon.app("/web"))["tasksRunning"] == 2

    code, output = await butte_app(marathon, "scale", "/web", "3", "--timeout", "60")
    assert code == 0, output
    code, output = await butte_app(marathon, "list")
    assert code == 0 and "/web" in output and "3/3" in output, output

    code, output = await butte_app(marathon, "tasks", "/web")
    assert code == 0 and output.count("TASK_RUNNING") == 3, output

    code, output = await butte_app(marathon, "restart", "/web", "--timeout", "60")
    assert code == 0, output
    code, output = await butte_app(marathon, "remove", "/web", "--timeout", "60")
    assert code == 0, output
    assert (await marathon.request("GET", "/v2/apps"))["apps"] == []


async def test_a_deployment_that_cannot_finish_says_why(marathon: MarathonKit, tmp_path: Path) -> None:
    definition = tmp_path / "huge.json"
    definition.write_text('{"id": "huge", "cmd": "sleep 300", "mem": 100000000, "instances": 1}')
    code, output = await butte_app(marathon, "deploy", str(definition), "--timeout", "3")
    assert code == 1, output
    assert "InsufficientMemory" in output, output


async def test_an_invalid_definition_shows_marathons_details(marathon: MarathonKit, tmp_path: Path) -> None:
    definition = tmp_path / "bad.json"
    definition.write_text('{"id": "/bad", "cmd": "sleep 1", "cpus": -1}')
    code, output = await butte_app(marathon, "deploy", str(definition))
    assert code == 1, output
    assert "422" in output and "/cpus" in output, output
