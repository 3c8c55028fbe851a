"""Small POSTs to the master over one pipelined HTTP/1.1 keep-alive connection.

Every task costs the agent three or four calls to the master (its status updates), so their overhead
bounds launch throughput. aiohttp's client spends ~0.3-0.5 ms of CPU per request; this sender writes
requests back to back on one connection (everything queued in one loop iteration goes out in one write),
and matches responses to requests in order, as HTTP/1.1 pipelining allows. It only needs to understand
the master's short answers (``Content-Length`` bodies). Any failure fails the calls in flight; the status
update manager retries what matters.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import final

log = logging.getLogger(__name__)

MAX_RESPONSE_HEAD = 64 * 1024


class ResponseError(Exception):
    """The server's answer is not HTTP/1.1 we can read."""


@final
class _Connection(asyncio.Protocol):
    """One connection: writes go out batched, responses resolve waiters first-in first-out."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._outgoing: list[bytes] = []
        self._buffer = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Queue a request; the future gets the response's status code."""
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._waiters.append(waiter)
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(request)
        return waiter

    def _flush(self) -> None:
        if self._transport is not None and not self.closed and self._outgoing:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while self._waiters and self._read_response():
                pass
        except ResponseError as exc:
            log.warning("Unreadable answer from the master: %s", exc)
            self.close()

    def _read_response(self) -> bool:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._buffer) > MAX_RESPONSE_HEAD:
                raise ResponseError("response head too long")
            return False
        status, headers = _parse_head(bytes(self._buffer[:head_end]))
        length = int(headers.get("content-length", "0"))
        end = head_end + 4 + length
        if len(self._buffer) < end:
            return False
        del self._buffer[:end]
        waiter = self._waiters.popleft()
        if not waiter.done():
            waiter.set_result(status)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("connection to the master lost"))

    def close(self) -> None:
        """Close the connection; calls in flight fail."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self.connection_lost(None)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ResponseError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        raise ResponseError("chunked answers are not expected here")
    return int(parts[1]), headers


@final
class CallSender:
    """POSTs to one ``host:port`` path; reconnects on the next call after a failure."""

    def __init__(self, host: str, port: int, path: str, timeout_s: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def post(self, body: bytes, headers: Mapping[str, str]) -> int:
        """Send one POST; its status code.

        Raises:
            OSError: the connection could not be made or broke before the answer came.
            TimeoutError: no answer within the timeout.
            ResponseError: the answer could not be read.
        """
        async with asyncio.timeout(self._timeout_s):
            connection = await self._connect()
            return await connection.send(self._request(body, headers))

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"POST {self._path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _connect(self) -> _Connection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._connecting is None:
            # Calls that arrive while connecting share the one attempt.
            self._connecting = asyncio.ensure_future(self._open())
        try:
            connection = await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None
        return connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: _Connection(loop), self._host, self._port)
        self.close()  # the broken connection this replaces, if any
        self._connection = connection
        return connection
