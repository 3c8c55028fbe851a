"""``GET /monitor/statistics`` and the agent's ``POST /api/v1`` against a fake monitor source."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from butte.agent.api.monitor import ContainerUsage, add_monitor_routes

USAGE = ContainerUsage(
    framework_id="f1",
    executor_id="t1",
    executor_name="Command Executor (Task: t1)",
    source="t1",
    container_id="c1",
    statistics={"timestamp": 1.5, "cpus_limit": 0.5, "mem_limit_bytes": 1024, "mem_rss_bytes": 512},
)


class FakeSource:
    async def container_usage(self) -> list[ContainerUsage]:
        return [USAGE]

    def state_view(self) -> dict[str, Any]:
        return {"get_tasks": {"launched_tasks": []}}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_monitor_routes(app, FakeSource())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def test_monitor_statistics_has_mesos_shape(client: TestClient[web.Request, web.Application]) -> None:
    for path in ("/monitor/statistics", "/monitor/statistics.json", "/slave(1)/monitor/statistics"):
        response = await client.get(path)
        assert response.status == 200
        assert await response.json() == [
            {
                "framework_id": "f1",
                "executor_id": "t1",
                "executor_name": "Command Executor (Task: t1)",
                "source": "t1",
                "statistics": USAGE.statistics,
            }
        ]


async def test_get_containers_reports_the_same_numbers(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/api/v1", json={"type": "GET_CONTAINERS"})
    assert response.status == 200
    assert await response.json() == {
        "type": "GET_CONTAINERS",
        "get_containers": {
            "containers": [
                {
                    "framework_id": {"value": "f1"},
                    "executor_id": {"value": "t1"},
                    "executor_name": "Command Executor (Task: t1)",
                    "container_id": {"value": "c1"},
                    "resource_statistics": USAGE.statistics,
                }
            ]
        },
    }


async def test_health_version_and_state_calls(client: TestClient[web.Request, web.Application]) -> None:
    health = await (await client.post("/api/v1", json={"type": "GET_HEALTH"})).json()
    assert health == {"type": "GET_HEALTH", "get_health": {"healthy": True}}
    version = await (await client.post("/api/v1", json={"type": "GET_VERSION"})).json()
    assert version["get_version"]["version_info"]["version"]
    state = await (await client.post("/api/v1", json={"type": "GET_STATE"})).json()
    assert state == {"type": "GET_STATE", "get_state": {"get_tasks": {"launched_tasks": []}}}


async def test_bad_calls_are_refused_as_mesos_does(client: TestClient[web.Request, web.Application]) -> None:
    unknown = await client.post("/api/v1", json={"type": "LAUNCH_NESTED_CONTAINER"})
    assert unknown.status == 400 and "LAUNCH_NESTED_CONTAINER" in await unknown.text()
    assert (await client.post("/api/v1", data=b"{", headers={"Content-Type": "application/json"})).status == 400
    protobuf = await client.post("/api/v1", data=b"x", headers={"Content-Type": "application/x-protobuf"})
    assert protobuf.status == 415
