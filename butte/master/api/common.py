"""HTTP edge helpers for the v1 APIs: content negotiation, error mapping and RecordIO event streams."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from butte.master.service import MasterService

JSON = "application/json"
PROTOBUF = "application/x-protobuf"

# Typed application keys (aiohttp warns about plain strings, and the test suite turns warnings into errors).
SERVICE: web.AppKey[MasterService] = web.AppKey("service")
FLAGS: web.AppKey[dict[str, str]] = web.AppKey("flags")

# Status by error class, walked along the exception's MRO so subclasses inherit their parent's code.
DEFAULT_STATUS: Mapping[type[ButteError], int] = {
    ValidationError: 400,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
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


def check_content_type(request: web.Request) -> None:
    """Mesos compares Content-Type exactly: missing is 400, anything but JSON is 415 here.

    Raises:
        web.HTTPBadRequest: no Content-Type header.
        web.HTTPUnsupportedMediaType: not exactly ``application/json``.
    """
    value = request.headers.get("Content-Type")
    if value is None:
        raise web.HTTPBadRequest(text="Expecting 'Content-Type' to be present")
    if value != JSON:
        raise web.HTTPUnsupportedMediaType(
            text=f"Expecting 'Content-Type' of {JSON} (protobuf is not supported by this server)"
        )


def accepts_json(request: web.Request) -> bool:
    """Whether the Accept header admits JSON (missing, ``*/*`` and ``application/*`` all do)."""
    accept = request.headers.get("Accept")
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (JSON, "*/*", "application/*"):
            return True
    return False


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
