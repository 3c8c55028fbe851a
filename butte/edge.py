"""HTTP edge helpers shared by every v1 API (master and agent): content negotiation, the one table that maps
typed errors to status codes, and RecordIO event streams. See ``mesos-v1-api.md`` §1."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from butte.core.errors import (
    ButteError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from butte.wire.recordio import frame

JSON = "application/json"


class UnsupportedMediaType(ButteError):
    """The request's Content-Type is not one we read (415)."""


class NotAcceptable(ButteError):
    """The client accepts no encoding we can answer in (406)."""


# Status by error class, walked along the exception's MRO so subclasses inherit their parent's code.
DEFAULT_STATUS: Mapping[type[ButteError], int] = {
    ValidationError: 400,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
    UnsupportedMediaType: 415,
    NotAcceptable: 406,
    ButteError: 500,
}


def status_for(exc: ButteError, overrides: Mapping[type[ButteError], int] | None = None) -> int:
    """The HTTP status for an error: the first class in its MRO found in ``overrides``, then the defaults."""
    for cls in type(exc).__mro__:
        if overrides and cls in overrides:
            return overrides[cls]
        if cls in DEFAULT_STATUS:
            return DEFAULT_STATUS[cls]
    return 500


def error_response(
    exc: ButteError, prefix: str = "", overrides: Mapping[type[ButteError], int] | None = None
) -> web.Response:
    """Mesos answers v1 API errors with a plain-text body."""
    return web.Response(status=status_for(exc, overrides), text=f"{prefix}{exc}", content_type="text/plain")


def check_content_type(content_type: str | None) -> None:
    """Mesos compares Content-Type exactly: missing is 400, anything but JSON is 415 here.

    Raises:
        ValidationError: no Content-Type header.
        UnsupportedMediaType: not exactly ``application/json`` (``; charset=utf-8`` included, as in Mesos).
    """
    if content_type is None:
        raise ValidationError("Content-Type", "Expecting 'Content-Type' to be present")
    if content_type != JSON:
        raise UnsupportedMediaType(f"Expecting 'Content-Type' of {JSON} (protobuf is not supported by this server)")


def content_type_error(content_type: str | None) -> web.Response | None:
    """The 400 or 415 answer for a request whose Content-Type Mesos would refuse, else None."""
    try:
        check_content_type(content_type)
    except ButteError as exc:
        return error_response(exc)
    return None


def accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits JSON (missing, ``*/*`` and ``application/*`` all do)."""
    if accept is None or not accept.strip():
        return True
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {JSON, "application/*", "*/*"})


def empty(status: int) -> web.Response:
    """An empty answer with ``Content-Length: 0`` (pymesos waits for EOF otherwise)."""
    return web.Response(status=status, body=b"")


class Outbox:
    """Records waiting to be written on one event stream; one writer drains it, so writes never interleave."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, record: bytes) -> None:
        """Queue one record (framed here); ignored once the stream is closed."""
        if self.closed:
            return
        self._chunks.append(frame(record))
        self._ready.set()

    def close(self) -> None:
        """Finish the stream after what is queued has been written."""
        self.closed = True
        self._ready.set()

    async def drain_to(self, response: web.StreamResponse) -> None:
        """Write queued records until the stream is closed; batches what piled up into one write."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._chunks:
                batch, self._chunks = b"".join(self._chunks), []
                await response.write(batch)
            if self.closed:
                return


async def open_stream(request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
    """Start a 200 chunked RecordIO response; its Content-Type is JSON, as Mesos sends it."""
    response = web.StreamResponse(status=200, headers={"Content-Type": JSON, **headers})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response
