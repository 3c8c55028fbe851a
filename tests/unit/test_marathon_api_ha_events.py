"""The event stream (SSE) and high availability: a standby proxying to a real leader server, 302 for events,
502 with no leader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, unused_port
from marathon_fake import Client, FakeControl, api_client

from butte.frameworks.marathon.api import make_app

SSE = {"Accept": "text/event-stream"}


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for ``predicate`` to hold, yielding to the loop between checks."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def read_event(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """One SSE message: its ``event:`` name and the decoded ``data:`` line."""
    event_line = (await response.content.readline()).decode()
    data_line = (await response.content.readline()).decode()
    assert (await response.content.readline()) == b"\n"
    assert event_line.startswith("event: ") and data_line.startswith("data: ")
    return event_line.removeprefix("event: ").strip(), json.loads(data_line.removeprefix("data: "))


async def test_events_attach_then_relay_filtered_events_then_detach() -> None:
    control = FakeControl()
    async with api_client(control) as client:
        response = await client.get(
            "/v2/events?event_type=event_stream_attached&event_type=api_post_event", headers=SSE
        )
        assert response.status == 200 and response.content_type == "text/event-stream"
        name, attached = await read_event(response)
        assert name == "event_stream_attached" and {"remoteAddress", "timestamp"} <= set(attached)
        control.publish("status_update_event", {"taskId": "filtered-out"})
        assert (await client.post("/v2/apps", json={"id": "/a", "cmd": "x"})).status == 201
        name, posted = await read_event(response)
        assert name == "api_post_event" and posted["appDefinition"]["id"] == "/a"
        response.close()
        # The server notices the client left on its next write, so keep publishing until it does.
        await until(lambda: _nudge(control) and _detached(control))


def _nudge(control: FakeControl) -> bool:
    control.publish("status_update_event", {})
    return True


def _detached(control: FakeControl) -> bool:
    return any(e["eventType"] == "event_stream_detached" for e in control.published)


async def test_events_need_the_event_stream_accept_header() -> None:
    async with api_client(FakeControl()) as client:
        response = await client.get("/v2/events", headers={"Accept": "application/json"})
        assert response.status == 405 and "message" in await response.json()


@pytest.fixture
async def leader() -> AsyncIterator[tuple[FakeControl, str]]:
    port = unused_port()
    address = f"127.0.0.1:{port}"
    control = FakeControl(leader=address, leading=True)
    server = TestServer(make_app(control, http_port=port, advertised=address), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield control, address
    finally:
        await server.close()


async def test_standby_proxies_to_the_leader(leader: tuple[FakeControl, str]) -> None:
    leader_control, address = leader
    standby = FakeControl(leader=address, leading=False)
    async with api_client(standby, advertised="127.0.0.1:1") as client:
        created = await client.post("/v2/apps?force=True", json={"id": "/web", "cmd": "x"})
        assert created.status == 201
        assert created.headers["X-Marathon-Leader"] == f"http://{address}"
        assert created.headers["X-Marathon-Via"] == "1.1 127.0.0.1:1"
        assert created.headers["Marathon-Deployment-Id"] == (await created.json())["deployments"][0]["id"]
        assert "/web" in leader_control.root().apps and not standby.root().apps
        fetched = await client.get("/v2/apps//web")
        assert fetched.status == 200 and (await fetched.json())["app"]["id"] == "/web"
        missing = await client.get("/v2/apps/ghost")
        assert missing.status == 404 and (await missing.json())["message"] == "App '/ghost' does not exist"
        local = await client.get("/ping")
        assert local.status == 200 and "X-Marathon-Via" not in local.headers


async def test_standby_redirects_events_to_the_leader() -> None:
    async with api_client(FakeControl(leader="10.0.0.9:8080", leading=False), advertised="127.0.0.1:1") as client:
        response = await client.get("/v2/events?event_type=x", headers=SSE, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "http://10.0.0.9:8080/v2/events?event_type=x"


async def test_no_leader_is_502() -> None:
    async with api_client(FakeControl(leader=None, leading=False)) as client:
        response = await client.get("/v2/apps")
        assert response.status == 502
        assert await response.json() == {"message": "Could not determine the current leader"}
        assert "X-Marathon-Leader" not in response.headers


async def test_unreachable_leader_is_502() -> None:
    control = FakeControl(leader=f"127.0.0.1:{unused_port()}", leading=False)
    async with api_client(control, advertised="127.0.0.1:1") as client:
        assert (await client.get("/v2/apps")).status == 502


async def test_a_handler_crash_is_500_and_the_server_lives_on() -> None:
    control = FakeControl()
    calls = {"n": 0}

    def broken_queue() -> list[object]:
        calls["n"] += 1
        raise RuntimeError("boom")

    control.queue = broken_queue  # type: ignore[method-assign,assignment]
    client: Client
    async with api_client(control) as client:
        response = await client.get("/v2/queue")
        assert response.status == 500 and "message" in await response.json()
        assert (await client.get("/ping")).status == 200 and calls["n"] == 1
