"""The SDK's one port to the network: SUBSCRIBE streams and calls to ``/api/v1/scheduler`` over aiohttp.

aiohttp errors stop here: they become :class:`~butte.scheduler.errors.Disconnected`, and non-2xx answers
become :class:`~butte.scheduler.errors.CallFailed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final, final
from urllib.parse import urlsplit

import aiohttp

from butte.core.errors import ValidationError
from butte.scheduler.errors import Disconnected, call_failed
from butte.wire.base import decode, encode
from butte.wire.recordio import RecordIODecoder, RecordIOError
from butte.wire.scheduler import Call, Event

log = logging.getLogger(__name__)

SCHEDULER_PATH: Final = "/api/v1/scheduler"
STREAM_ID_HEADER: Final = "Mesos-Stream-Id"
# Mesos compares the Content-Type exactly: "application/json; charset=utf-8" gets 415.
_SUBSCRIBE_HEADERS: Final = {"Content-Type": "application/json", "Accept": "application/json"}
MAX_REDIRECTS: Final = 5


def describe(exc: BaseException) -> str:
    """A short text for a transport error (``TimeoutError()`` has no message of its own)."""
    return str(exc) or type(exc).__name__


def master_from_location(location: str) -> str:
    """``host:port`` from a 307 ``Location``: ``//host:port/path``, ``http://host:port/…`` or ``host:port``.

    Raises:
        Disconnected: the header names no host.
    """
    netloc = urlsplit(location).netloc if "//" in location else location.split("/", 1)[0]
    if not netloc:
        raise Disconnected(f"redirect to {location!r} names no master")
    return netloc


@final
class EventStream:
    """One open SUBSCRIBE response: its stream id, the master it came from, and its RecordIO events."""

    def __init__(self, response: aiohttp.ClientResponse, master: str) -> None:
        self.master = master
        self.stream_id = response.headers.get(STREAM_ID_HEADER, "")
        self._response = response
        self._decoder = RecordIODecoder()
        self._records: deque[bytes] = deque()

    async def next_event(self, idle_timeout_s: float | None) -> Event | None:
        """The next event, or None when the master ends the stream.

        Raises:
            Disconnected: nothing arrived for ``idle_timeout_s``, the connection broke, or the framing is
                corrupt.
        """
        while True:
            while self._records:
                event = _decode_event(self._records.popleft())
                if event is not None:
                    return event
            chunk = await self._read_chunk(idle_timeout_s)
            if not chunk:
                return None
            try:
                self._records.extend(self._decoder.feed(chunk))
            except RecordIOError as exc:
                raise Disconnected(f"corrupt event stream from {self.master}: {exc}") from exc

    async def _read_chunk(self, idle_timeout_s: float | None) -> bytes:
        try:
            async with asyncio.timeout(idle_timeout_s):
                return await self._response.content.readany()
        except TimeoutError as exc:
            raise Disconnected(f"no event from {self.master} for {idle_timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise Disconnected(f"event stream from {self.master} broke: {describe(exc)}") from exc

    def close(self) -> None:
        """Drop the connection (the master then sees the framework as disconnected)."""
        self._response.close()


def _decode_event(record: bytes) -> Event | None:
    try:
        return decode(record, Event)
    except ValidationError as exc:
        # A newer master may send event types we do not know; skipping keeps the stream alive.
        log.warning("skipping an event that does not decode (%s): %.200r", exc, record)
        return None


@final
class SchedulerEndpoint:
    """Posts calls to a master's scheduler endpoint through one keep-alive session."""

    def __init__(self, session: aiohttp.ClientSession, *, call_timeout_s: float = 30.0) -> None:
        self._session = session
        self._call_timeout_s = call_timeout_s
        self._call_timeout = aiohttp.ClientTimeout(total=call_timeout_s)
        # The stream stays open for hours, so aiohttp bounds only connecting; the wait for the response headers
        # is bounded in _post_stream, and idleness afterwards per read (EventStream.next_event).
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=call_timeout_s)
        self._urls: dict[str, str] = {}

    async def subscribe(self, master: str, call: Call) -> EventStream:
        """POST SUBSCRIBE to ``master``, following 307 redirects; returns the open stream.

        Each hop must answer with its headers within the call timeout: a paused master (SIGSTOP), or one a 307
        names just after it lost the election, still accepts connections in the kernel but never answers, and
        waiting on it would hang the framework for good. The caller starts again from its detector.

        Raises:
            Disconnected: no answer in time, too many redirects, or a redirect without a usable ``Location``.
            CallFailed: any answer other than 200 or 307 (503 is ``CallUnavailable``).
        """
        body = encode(call)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._post_stream(master, body)
            if response.status == 307:
                response.release()
                master = master_from_location(response.headers.get("Location", ""))
                log.info("redirected to the leading master at %s", master)
                continue
            if response.status != 200:
                text = await _read_text(response)
                raise call_failed("SUBSCRIBE", response.status, text)
            return EventStream(response, master)
        raise Disconnected(f"more than {MAX_REDIRECTS} redirects while subscribing")

    async def _post_stream(self, master: str, body: bytes) -> aiohttp.ClientResponse:
        try:
            async with asyncio.timeout(self._call_timeout_s):  # post() returns once the headers are in
                return await self._session.post(
                    self._url(master),
                    data=body,
                    headers=_SUBSCRIBE_HEADERS,
                    allow_redirects=False,
                    timeout=self._stream_timeout,
                )
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's connect timeout is both
            raise Disconnected(f"SUBSCRIBE to {master} got no answer: {describe(exc)}") from exc
        except TimeoutError as exc:
            raise Disconnected(f"SUBSCRIBE to {master} got no answer within {self._call_timeout_s:g}s") from exc

    async def send(self, master: str, stream_id: str, call: Call) -> None:
        """POST one call on the current stream's behalf.

        Raises:
            Disconnected: no answer within the call timeout.
            CallFailed: any non-2xx answer, with its status and body text.
        """
        headers = {"Content-Type": "application/json", STREAM_ID_HEADER: stream_id}
        try:
            async with self._session.post(
                self._url(master),
                data=encode(call),
                headers=headers,
                allow_redirects=False,
                timeout=self._call_timeout,
            ) as response:
                if 200 <= response.status < 300:
                    await response.read()  # drained, so the connection goes back to the pool
                    return
                text = await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Disconnected(f"{call.type} to {master} got no answer: {describe(exc)}") from exc
        raise call_failed(call.type or "UNKNOWN", response.status, text)

    def _url(self, master: str) -> str:
        url = self._urls.get(master)
        if url is None:
            url = self._urls[master] = f"http://{master}{SCHEDULER_PATH}"
        return url


async def _read_text(response: aiohttp.ClientResponse) -> str:
    try:
        return await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return ""
    finally:
        response.release()
