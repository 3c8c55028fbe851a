"""Readiness checks on a real cluster: a deployment waits for its tasks to be ready, and shows why it waits."""

from __future__ import annotations

import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonKit
from butte.testing.wait import until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def marathon(tmp_path: Any) -> AsyncIterator[MarathonKit]:
    async with Cluster(agents=1, work_dir=tmp_path) as cluster, MarathonKit(cluster) as kit:
        yield kit


def gated_app(app_id: str, gate: Path) -> dict[str, Any]:
    """An HTTP server on $PORT0 serving ``gate``: ``/ready`` answers 404 until the test creates that file."""
    server = (
        f"{shlex.quote(sys.executable)} -m http.server $PORT0 --bind 127.0.0.1 --directory {shlex.quote(str(gate))}"
    )
    return {
        "id": app_id,
        "cmd": f"exec {server}",
        "cpus": 0.1,
        "mem": 32,
        "instances": 1,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [
            {
                "portName": "http",
                "path": "/ready",
                "intervalSeconds": 2,
                "timeoutSeconds": 1,
                "preserveLastResponse": True,
            }
        ],
    }


async def waiting_results(marathon: MarathonKit) -> list[dict[str, Any]]:
    """The readiness results of the running deployment's current actions (empty when there is none)."""
    deployments = await marathon.request("GET", "/v2/deployments")
    return [result for d in deployments for a in d["currentActions"] for result in a["readinessCheckResults"]]


async def test_deployments_wait_for_readiness(marathon: MarathonKit, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    await marathon.request("POST", "/v2/apps", gated_app("/warm", gate))

    # The task runs, but the deployment waits: /v2/deployments says why (the probe's last answer is a 404; the
    # first probes may find the server not listening yet, and have no answer to show).
    async def answered() -> list[dict[str, Any]]:
        return [r for r in await waiting_results(marathon) if r["lastResponse"] is not None]

    results = await until(answered, timeout=30, what="an answered readiness probe", interval=0.2)
    assert results[0]["ready"] is False and results[0]["name"] == "readinessCheck"
    assert results[0]["lastResponse"]["status"] == 404
    app = (await marathon.request("GET", "/v2/apps/warm", embed="app.readiness"))["app"]
    assert app["tasksRunning"] == 1 and app["deployments"]
    assert app["readinessCheckResults"][0]["taskId"] == results[0]["taskId"]

    (gate / "ready").write_text("yes")
    await marathon.wait_running("/warm", 1)
    (first,) = [task["id"] for task in (await marathon.app("/warm"))["tasks"]]

    # A restart starts a new task next to the old one and keeps the old one until the new one is ready.
    (gate / "ready").unlink()
    await marathon.request("POST", "/v2/apps/warm/restart")

    async def new_one_waiting() -> bool:
        results = await waiting_results(marathon)
        return any(r["taskId"] != first and r["ready"] is False for r in results)

    await until(new_one_waiting, timeout=30, what="the new task's readiness result", interval=0.2)
    tasks = {task["id"] for task in (await marathon.app("/warm"))["tasks"]}
    assert first in tasks and len(tasks) == 2

    (gate / "ready").write_text("yes")
    await marathon.wait_running("/warm", 1)
    (second,) = [task["id"] for task in (await marathon.app("/warm"))["tasks"]]
    assert second != first
    assert await waiting_results(marathon) == []
