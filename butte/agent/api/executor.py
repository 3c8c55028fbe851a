"""``POST /api/v1/executor``: the v1 executor API, as Mesos's agent serves it (reference §3.1).

This edge checks the HTTP rules (content types, required sub-messages, the UPDATE validation Mesos makes)
and hands every call to an :class:`ExecutorPort`, which the agent implements and tests replace. A SUBSCRIBE
becomes a chunked RecordIO stream fed from an :class:`ExecutorStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol, final

from aiohttp import web

from butte.core.errors import ButteError, NotFound, ValidationError
from butte.edge import JSON, NotAcceptable, accepts_json, check_content_type, error_response
from butte.wire.base import check_uuid, decode, encode, require_submessage
from butte.wire.executor import ExecutorCall, ExecutorEvent
from butte.wire.recordio import frame

log = logging.getLogger(__name__)


_REQUIRED_SUBMESSAGE = {"SUBSCRIBE": "subscribe", "UPDATE": "update", "MESSAGE": "message"}


@final
class ExecutorStream:
    """One subscription's outbox: the agent pushes events, the HTTP handler writes them as RecordIO."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        self.closed = False

    def send(self, event: ExecutorEvent) -> None:
        """Queue an event for the executor (dropped once the stream is closed)."""
        if not self.closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        """End the stream after the events already queued."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def next_event(self) -> ExecutorEvent | None:
        """The next event to write, or None when the stream is over."""
        return await self._queue.get()


class ExecutorPort(Protocol):
    """What the executor API needs from the agent. Errors: NotFound/ValidationError → 400, Forbidden → 403."""

    def subscribe(self, call: ExecutorCall, stream: ExecutorStream) -> None: ...

    def update(self, call: ExecutorCall) -> None: ...

    def message(self, call: ExecutorCall) -> None: ...

    def heartbeat(self, call: ExecutorCall) -> None: ...

    def disconnected(self, call: ExecutorCall, stream: ExecutorStream) -> None: ...


def add_executor_routes(app: web.Application, port: ExecutorPort) -> None:
    """Serve the executor API at ``/api/v1/executor`` and ``/slave(1)/api/v1/executor``."""
    handler = ExecutorApi(port)
    for path in ("/api/v1/executor", "/slave(1)/api/v1/executor"):
        app.router.add_post(path, handler.handle)


@final
class ExecutorApi:
    """The request handler; one instance per agent."""

    def __init__(self, port: ExecutorPort) -> None:
        self._port = port

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Parse, validate and dispatch one executor call."""
        try:
            call = parse_call(request.headers.get("Content-Type"), await request.read())
            if call.type == "SUBSCRIBE":
                return await self._subscribe(request, call)
            self._dispatch(call)
        except ButteError as exc:
            # Mesos answers "Framework cannot be found" and "Executor cannot be found" with 400.
            return error_response(exc, overrides={NotFound: 400})
        return web.Response(status=202)

    def _dispatch(self, call: ExecutorCall) -> None:
        if call.type == "UPDATE":
            self._port.update(call)
        elif call.type == "MESSAGE":
            self._port.message(call)
        elif call.type == "HEARTBEAT":
            self._port.heartbeat(call)
        else:
            raise ValidationError("type", f"Unsupported call type {call.type}")

    async def _subscribe(self, request: web.Request, call: ExecutorCall) -> web.StreamResponse:
        if not accepts_json(request.headers.get("Accept")):
            raise NotAcceptable("Only 'application/json' responses are supported")
        stream = ExecutorStream()
        self._port.subscribe(call, stream)
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            await _pump(stream, response)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.close()
            self._port.disconnected(call, stream)
        return response


async def _pump(stream: ExecutorStream, response: web.StreamResponse) -> None:
    while (event := await stream.next_event()) is not None:
        await response.write(frame(encode(event)))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


def parse_call(content_type: str | None, body: bytes) -> ExecutorCall:
    """The call in ``body`` after Mesos's content-type, presence and UPDATE checks.

    Raises:
        ValidationError: no Content-Type, a body that does not parse, or a call Mesos would reject.
        UnsupportedMediaType: a Content-Type other than exactly ``application/json``.
    """
    check_content_type(content_type)
    call = decode(body, ExecutorCall)
    if call.type is None:
        raise ValidationError("type", "Expecting 'type' to be present")
    require_submessage(call, call.type, _REQUIRED_SUBMESSAGE)
    if call.type == "UPDATE":
        validate_update(call)
    return call


def validate_update(call: ExecutorCall) -> None:
    """Mesos's checks on an executor's status update (``validation::executor::call``).

    Raises:
        ValidationError: no 16-byte uuid, a source other than SOURCE_EXECUTOR, TASK_STAGING, or a
            status naming another executor.
    """
    assert call.update is not None
    status = call.update.status
    if status.uuid is None:
        raise ValidationError("update.status.uuid", "Expecting 'uuid' to be present")
    check_uuid(status.uuid, "update.status.uuid")
    if status.source != "SOURCE_EXECUTOR":
        raise ValidationError("update.status.source", "Received Call from executor with invalid source")
    if status.state == "TASK_STAGING":
        raise ValidationError("update.status.state", "Received TASK_STAGING from executor")
    if status.executor_id is not None and status.executor_id != call.executor_id:
        raise ValidationError("update.status.executor_id", "ExecutorID in Call and in status update differ")
