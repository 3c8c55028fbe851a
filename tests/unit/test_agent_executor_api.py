"""The executor API edge (``POST /api/v1/executor``) against a fake port, over real loopback HTTP."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from butte.agent.api.executor import ExecutorStream, add_executor_routes
from butte.core.errors import Forbidden, NotFound
from butte.edge import accepts_json
from butte.wire.base import ID
from butte.wire.executor import ExecutorCall, ExecutorEvent, ExecutorKill
from butte.wire.recordio import RecordIODecoder

FRAMEWORK = {"value": "F"}
EXECUTOR = {"value": "E"}


class FakePort:
    def __init__(self) -> None:
        self.calls: list[ExecutorCall] = []
        self.streams: list[ExecutorStream] = []
        self.subscribed = False
        self.disconnects = 0

    def _check(self, call: ExecutorCall) -> None:
        if call.framework_id.value != "F":
            raise NotFound("Framework cannot be found")
        if call.executor_id.value != "E":
            raise NotFound("Executor cannot be found")

    def subscribe(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        self._check(call)
        if self.streams:
            self.streams[-1].close()
        self.streams.append(stream)
        self.subscribed = True
        stream.send(ExecutorEvent(type="HEARTBEAT"))

    def _subscribed(self, call: ExecutorCall) -> None:
        self._check(call)
        if not self.subscribed:
            raise Forbidden("Executor is not subscribed")
        self.calls.append(call)

    def update(self, call: ExecutorCall) -> None:
        self._subscribed(call)

    def message(self, call: ExecutorCall) -> None:
        self._subscribed(call)

    def heartbeat(self, call: ExecutorCall) -> None:
        self._subscribed(call)

    def disconnected(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        self.disconnects += 1


@pytest.fixture
def port() -> FakePort:
    return FakePort()


@pytest.fixture
async def client(port: FakePort) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_executor_routes(app, port)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def call(kind: str, **body: Any) -> bytes:
    return json.dumps({"framework_id": FRAMEWORK, "executor_id": EXECUTOR, "type": kind, **body}).encode()


def update_body(**status: Any) -> dict[str, Any]:
    base = {
        "task_id": {"value": "t"},
        "state": "TASK_RUNNING",
        "source": "SOURCE_EXECUTOR",
        "uuid": base64.b64encode(os.urandom(16)).decode(),
    }
    return {"update": {"status": {**base, **status}}}


JSON = {"Content-Type": "application/json"}


async def post(client: TestClient[web.Request, web.Application], body: bytes, **headers: str) -> tuple[int, str]:
    response = await client.post("/api/v1/executor", data=body, headers=headers or JSON)
    return response.status, await response.text()


async def subscribe(client: TestClient[web.Request, web.Application]) -> aiohttp.ClientResponse:
    response = await client.post("/api/v1/executor", data=call("SUBSCRIBE", subscribe={}), headers=JSON)
    assert response.status == 200
    return response


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    decoder = RecordIODecoder()
    events: list[dict[str, Any]] = []
    while len(events) < count:
        chunk = await response.content.readany()
        assert chunk, "stream ended early"
        events.extend(json.loads(record) for record in decoder.feed(chunk))
    return events


async def test_content_type_rules(client: TestClient[web.Request, web.Application]) -> None:
    body = call("HEARTBEAT")
    response = await client.post("/api/v1/executor", data=body, skip_auto_headers=["Content-Type"])
    assert response.status == 400
    assert "Content-Type" in await response.text()
    assert (await post(client, body, **{"Content-Type": "application/json; charset=utf-8"}))[0] == 415
    assert (await post(client, body, **{"Content-Type": "text/plain"}))[0] == 415


async def test_malformed_and_incomplete_calls_are_400(client: TestClient[web.Request, web.Application]) -> None:
    assert (await post(client, b"{not json"))[0] == 400
    assert (await post(client, json.dumps({"type": "HEARTBEAT"}).encode()))[0] == 400
    status, text = await post(client, json.dumps({"framework_id": FRAMEWORK, "executor_id": EXECUTOR}).encode())
    # Each message starts with the field it is about, then says what Mesos says.
    assert (status, text) == (400, "type: Expecting 'type' to be present")
    assert await post(client, call("UPDATE")) == (400, "update: Expecting 'update' to be present")


async def test_only_post_is_allowed(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/api/v1/executor")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_calls_before_subscribe_are_403(client: TestClient[web.Request, web.Application]) -> None:
    assert await post(client, call("HEARTBEAT")) == (403, "Executor is not subscribed")


async def test_unknown_framework_or_executor_is_400(client: TestClient[web.Request, web.Application]) -> None:
    body = json.dumps({"framework_id": {"value": "X"}, "executor_id": EXECUTOR, "type": "SUBSCRIBE", "subscribe": {}})
    assert await post(client, body.encode()) == (400, "Framework cannot be found")
    body = json.dumps({"framework_id": FRAMEWORK, "executor_id": {"value": "X"}, "type": "HEARTBEAT"})
    assert await post(client, body.encode()) == (400, "Executor cannot be found")


async def test_subscribe_streams_recordio_json(
    client: TestClient[web.Request, web.Application], port: FakePort
) -> None:
    response = await subscribe(client)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Mesos-Stream-Id" not in response.headers
    port.streams[-1].send(ExecutorEvent(type="KILL", kill=ExecutorKill(task_id=ID(value="t"))))
    events = await read_events(response, 2)
    assert events == [{"type": "HEARTBEAT"}, {"type": "KILL", "kill": {"task_id": {"value": "t"}}}]


async def test_second_subscribe_closes_the_first_stream(
    client: TestClient[web.Request, web.Application], port: FakePort
) -> None:
    first = await subscribe(client)
    await read_events(first, 1)
    second = await subscribe(client)
    await read_events(second, 1)
    assert await first.content.read() == b""  # the first stream ended
    assert port.disconnects == 1


async def test_subscribe_that_accepts_no_json_is_406(client: TestClient[web.Request, web.Application]) -> None:
    headers = {**JSON, "Accept": "application/x-protobuf"}
    assert (await post(client, call("SUBSCRIBE", subscribe={}), **headers))[0] == 406


async def test_accepted_calls_are_202_with_empty_body(
    client: TestClient[web.Request, web.Application], port: FakePort
) -> None:
    stream = await subscribe(client)
    for body in (call("HEARTBEAT"), call("MESSAGE", message={"data": "aGk="}), call("UPDATE", **update_body())):
        response = await client.post("/api/v1/executor", data=body, headers=JSON)
        assert response.status == 202
        assert response.headers["Content-Length"] == "0"
    assert [c.type for c in port.calls] == ["HEARTBEAT", "MESSAGE", "UPDATE"]
    stream.close()


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"uuid": None}, "Expecting 'uuid' to be present"),
        ({"uuid": base64.b64encode(b"short").decode()}, "Not a valid UUID"),
        ({"uuid": "%%%"}, "not valid base64"),
        ({"source": "SOURCE_AGENT"}, "Received Call from executor with invalid source"),
        ({"state": "TASK_STAGING"}, "Received TASK_STAGING from executor"),
        ({"executor_id": {"value": "other"}}, "ExecutorID in Call and in status update differ"),
    ],
)
async def test_update_validation(
    client: TestClient[web.Request, web.Application], status: dict[str, Any], message: str
) -> None:
    body = update_body(**status)
    if status.get("uuid", "") is None:
        del body["update"]["status"]["uuid"]
    status, text = await post(client, call("UPDATE", **body))
    assert status == 400 and text.startswith("update.status.") and text.endswith(message)


async def test_slave_prefixed_route_serves_the_same_api(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/slave(1)/api/v1/executor", data=call("HEARTBEAT"), headers=JSON)
    assert response.status == 403


def test_accept_header_rules() -> None:
    assert accepts_json(None)
    assert accepts_json("*/*")
    assert accepts_json("application/*;q=0.5")
    assert accepts_json("application/x-protobuf, application/json")
    assert not accepts_json("application/x-protobuf")
