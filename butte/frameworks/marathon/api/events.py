"""``GET /v2/events``: Marathon's event bus as Server-Sent Events (A3).

Each event is ``event: <eventType>`` and one line of JSON under ``data:``. A new client first gets
``event_stream_attached``; ``event_type`` (repeatable, Marathon 1.3.7+) keeps only the named types. The stream
never ends from the server side; when the client goes away ``event_stream_detached`` is published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Collection
from typing import Any

from aiohttp import web

from butte.frameworks.marathon.api.params import MethodNotAllowed, control_of
from butte.frameworks.marathon.model import iso_timestamp

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"


def sse_frame(event: dict[str, Any]) -> bytes:
    """One SSE message: the event type, then the payload as a single ``data:`` line."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event.get('eventType', 'message')}\ndata: {data}\n\n".encode()


def wanted(event: dict[str, Any], types: Collection[str]) -> bool:
    """Whether the ``event_type`` filter lets ``event`` through (no filter: everything)."""
    return not types or event.get("eventType") in types


async def stream(request: web.Request) -> web.StreamResponse:
    """Stream events until the client disconnects.

    Raises:
        MethodNotAllowed: the client does not accept ``text/event-stream`` (Marathon answers 405).
    """
    if EVENT_STREAM not in request.headers.get("Accept", ""):
        raise MethodNotAllowed("The event stream needs 'Accept: text/event-stream'")
    control = control_of(request)
    types = frozenset(request.query.getall("event_type", []))
    events = control.events()
    response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"})
    await response.prepare(request)
    attached = {"remoteAddress": request.remote, "eventType": "event_stream_attached"}
    attached["timestamp"] = iso_timestamp(control.now())
    try:
        if wanted(attached, types):
            await response.write(sse_frame(attached))
        await _relay(events, response, types)
    except ConnectionResetError:
        log.debug("marathon events: %s went away", request.remote)
    finally:
        await _close(events)
        control.publish("event_stream_detached", {"remoteAddress": request.remote})
    return response


async def _relay(events: AsyncIterator[dict[str, Any]], response: web.StreamResponse, types: Collection[str]) -> None:
    async for event in events:
        if wanted(event, types):
            await response.write(sse_frame(event))


async def _close(events: AsyncIterator[dict[str, Any]]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        await closer()
