"""The pipelined call sender against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from butte.agent.call_sender import CallSender, ResponseError, _parse_head


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.delay_s = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if body == b"refuse":
            return web.Response(status=400, text="Not the agent's current stream")
        if body == b"close":
            return web.Response(status=202, headers={"Connection": "close"})
        return web.Response(status=202)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, TestServer]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/api/v1/agent", recorder.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield recorder, test_server
    await test_server.close()


def sender_for(test_server: TestServer, timeout_s: float = 5.0) -> CallSender:
    assert test_server.port is not None
    return CallSender("127.0.0.1", test_server.port, "/api/v1/agent", timeout_s=timeout_s)


async def test_many_calls_share_one_connection_in_order(server: tuple[Recorder, TestServer]) -> None:
    recorder, test_server = server
    sender = sender_for(test_server)
    headers = {"Content-Type": "application/json", "Mesos-Stream-Id": "s1"}
    statuses = await asyncio.gather(*(sender.post(b'{"n":%d}' % i, headers) for i in range(100)))
    assert statuses == [202] * 100
    assert recorder.bodies == [b'{"n":%d}' % i for i in range(100)]
    assert recorder.headers[0]["Mesos-Stream-Id"] == "s1"
    assert recorder.headers[0]["Content-Type"] == "application/json"
    sender.close()


async def test_error_status_and_body_are_consumed(server: tuple[Recorder, TestServer]) -> None:
    _, test_server = server
    sender = sender_for(test_server)
    assert await sender.post(b"refuse", {}) == 400
    assert await sender.post(b"ok", {}) == 202  # the error body did not confuse the next answer
    sender.close()


async def test_reconnects_after_the_server_closes(server: tuple[Recorder, TestServer]) -> None:
    recorder, test_server = server
    sender = sender_for(test_server)
    assert await sender.post(b"close", {}) == 202
    assert await sender.post(b"after", {}) == 202
    assert recorder.bodies[-1] == b"after"
    sender.close()


async def test_a_slow_answer_times_out(server: tuple[Recorder, TestServer]) -> None:
    recorder, test_server = server
    recorder.delay_s = 1.0
    sender = sender_for(test_server, timeout_s=0.1)
    with pytest.raises(TimeoutError):
        await sender.post(b"slow", {})
    sender.close()


async def test_connection_refused_is_an_os_error() -> None:
    sender = CallSender("127.0.0.1", 1, "/api/v1/agent")
    with pytest.raises(OSError):
        await sender.post(b"x", {})


def test_unreadable_heads_are_rejected() -> None:
    assert _parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0") == (202, {"content-length": "0"})
    with pytest.raises(ResponseError):
        _parse_head(b"garbage")
    with pytest.raises(ResponseError):
        _parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")
