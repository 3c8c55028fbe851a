"""A fake master for SDK tests: speaks ``/api/v1/scheduler`` on loopback and checks every request exactly.

It holds no tests of its own; ``test_scheduler_sdk*.py`` and ``test_run_cmd*.py`` import it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from butte.core.errors import ValidationError
from butte.wire.base import decode
from butte.wire.recordio import frame
from butte.wire.scheduler import Call, validate_call

FRAMEWORK_ID = "M-0000"
Json = dict[str, Any]


def status_uuid(n: int) -> str:
    """A base64 16-byte uuid, as agents put in TaskStatus."""
    return base64.b64encode(n.to_bytes(16, "big")).decode()


def offer(offer_id: str, agent_id: str = "M-S0", cpus: float = 1.0, mem: float = 128.0, port: int = 5051) -> Json:
    """An OFFER as the master sends it to a non-MULTI_ROLE framework."""
    return {
        "id": {"value": offer_id},
        "framework_id": {"value": FRAMEWORK_ID},
        "agent_id": {"value": agent_id},
        "hostname": "127.0.0.1",
        "url": {"scheme": "http", "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": port}},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "role": "*"},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}, "role": "*"},
        ],
    }


def update(task_id: str, state: str, uuid: str | None = None, **extra: Any) -> Json:
    """An UPDATE event."""
    status: Json = {"task_id": {"value": task_id}, "state": state, "agent_id": {"value": "M-S0"}, **extra}
    if uuid is not None:
        status["uuid"] = uuid
    return {"type": "UPDATE", "update": {"status": status}}


class FakeStream:
    """One SUBSCRIBE response the fake master holds open."""

    def __init__(self, request: web.Request, response: web.StreamResponse, body: Json, stream_id: str) -> None:
        self.request = request
        self.response = response
        self.body = body
        self.stream_id = stream_id
        self.finished = asyncio.Event()

    async def send(self, *events: Json) -> None:
        """Write events, one chunk holding all of them."""
        await self.send_raw(b"".join(frame(json.dumps(e).encode()) for e in events))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as one HTTP chunk."""
        await self.response.write(data)

    def end(self) -> None:
        """End the chunked body cleanly (the master closed the stream)."""
        self.finished.set()

    def abort(self) -> None:
        """Drop the connection mid-stream."""
        transport = self.request.transport
        if transport is not None:
            transport.close()
        self.finished.set()


class FakeMaster:
    """An in-test master: subscriptions arrive on :attr:`streams`, calls on :attr:`calls`."""

    def __init__(self, heartbeat_interval_s: float = 15.0, send_subscribed: bool = True) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.send_subscribed = send_subscribed
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.calls: asyncio.Queue[Json] = asyncio.Queue()
        self.subscribe_requests: list[Json] = []
        self.subscribe_answers: deque[Callable[[], web.Response]] = deque()
        self.call_answer: Callable[[Json], web.Response] = lambda call: web.Response(status=202)
        self.problems: list[str] = []
        self.current_stream: FakeStream | None = None
        self._stream_ids = (f"stream-{n}" for n in itertools.count(1))
        self._server: TestServer | None = None
        self.extra_routes: list[web.RouteDef] = []

    @property
    def address(self) -> str:
        """host:port of the fake master."""
        assert self._server is not None and self._server.port is not None
        return f"127.0.0.1:{self._server.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._handle)
        app.router.add_routes(self.extra_routes)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        """End every open stream and stop listening."""
        if self.current_stream is not None:
            self.current_stream.end()
        assert self._server is not None
        await self._server.close()

    async def next_stream(self, timeout_s: float = 5.0) -> FakeStream:
        """The next subscription."""
        async with asyncio.timeout(timeout_s):
            return await self.streams.get()

    async def next_call(self, timeout_s: float = 5.0) -> Json:
        """The next non-SUBSCRIBE call's body."""
        async with asyncio.timeout(timeout_s):
            return await self.calls.get()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Content-Type") != "application/json":
            self.problems.append(f"Content-Type {request.headers.get('Content-Type')!r}")
            return web.Response(status=415)
        raw = await request.read()
        try:
            validate_call(decode(raw, Call))
        except ValidationError as exc:
            self.problems.append(f"invalid call {raw!r}: {exc}")
            return web.Response(status=400, text=f"Failed to validate scheduler::Call: {exc}")
        body: Json = json.loads(raw)
        if body["type"] == "SUBSCRIBE":
            return await self._subscribe(request, body)
        return self._call(request, body)

    async def _subscribe(self, request: web.Request, body: Json) -> web.StreamResponse:
        self.subscribe_requests.append(body)
        if request.headers.get("Accept") != "application/json":
            self.problems.append(f"SUBSCRIBE Accept {request.headers.get('Accept')!r}")
        if "Mesos-Stream-Id" in request.headers:
            self.problems.append("SUBSCRIBE carried a Mesos-Stream-Id")
            return web.Response(status=400)
        if self.subscribe_answers:
            return self.subscribe_answers.popleft()()
        stream_id = next(self._stream_ids)
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream_id})
        response.enable_chunked_encoding()
        await response.prepare(request)
        stream = FakeStream(request, response, body, stream_id)
        self._replace_stream(stream)
        if self.send_subscribed:
            await stream.send(self.subscribed_event(), {"type": "HEARTBEAT"})
        self.streams.put_nowait(stream)
        await stream.finished.wait()
        return response

    def _replace_stream(self, stream: FakeStream) -> None:
        # Mesos keeps one stream per framework: a new SUBSCRIBE closes the old one.
        if self.current_stream is not None:
            self.current_stream.end()
        self.current_stream = stream

    def subscribed_event(self) -> Json:
        """The SUBSCRIBED event this master sends first."""
        return {
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": FRAMEWORK_ID},
                "heartbeat_interval_seconds": self.heartbeat_interval_s,
            },
        }

    def _call(self, request: web.Request, body: Json) -> web.Response:
        stream_id = request.headers.get("Mesos-Stream-Id")
        current = self.current_stream
        if current is None or stream_id != current.stream_id:
            self.problems.append(f"{body['type']} with stream id {stream_id!r}")
            return web.Response(status=400, text="The stream ID included in this request didn't match")
        self.calls.put_nowait(body)
        return self.call_answer(body)


@contextlib.asynccontextmanager
async def started(master: FakeMaster) -> AsyncIterator[FakeMaster]:
    """Start, yield, close, and fail on any malformed request the master saw."""
    await master.start()
    try:
        yield master
    finally:
        await master.close()
    assert master.problems == []
