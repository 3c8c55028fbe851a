"""Marathon's event bus: every event goes to every ``/v2/events`` subscriber that keeps up.

A subscriber that falls ``QUEUE_LIMIT`` events behind loses the newest ones rather than slowing Marathon
down, as Marathon drops events for slow consumers (clients treat events as cache invalidation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, final

from butte.frameworks.marathon.model import iso_timestamp

QUEUE_LIMIT: Final = 1024

log = logging.getLogger(__name__)


@final
class EventBus:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.published = 0
        self.dropped = 0

    def publish(self, event_type: str, fields: dict[str, Any]) -> None:
        """Send an event to every subscriber; ``eventType`` and ``timestamp`` are added here."""
        event = {**fields, "eventType": event_type, "timestamp": iso_timestamp(self._clock())}
        self.published += 1
        for queue in self._queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Events from now on, until :meth:`close`."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        for queue in self._queues:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
