"""Reliable task status updates: Mesos's status update manager as a pure core.

Per task there is one stream: a FIFO of updates of which only the head is in flight. The head is forwarded
to the master and retried with backoff (Mesos: 10 s, doubling, capped at 10 min) until the framework's
acknowledgement with the head's uuid comes back through the master; then it is popped and the next update
is forwarded at once. So a framework sees each task's updates in order, each at least once. When a terminal
update is acknowledged the stream closes. While the agent has no master the manager is paused; resuming
replays every head (Mesos does the same after reregistration).

Time comes in as ``now``; the shell carries out the returned effects and calls :meth:`tick` at
:meth:`StatusUpdateManager.next_retry_at`.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import final

from butte.core.errors import ValidationError
from butte.wire.mesos import TERMINAL_STATES, TaskStatus

RETRY_INITIAL_S = 10.0
RETRY_MAX_S = 600.0

StreamKey = tuple[str, str]  # (framework id, task id)


@final
@dataclass(frozen=True, slots=True)
class ForwardUpdate:
    """Effect: send this update to the master (``retry`` when it was sent before)."""

    framework_id: str
    task_id: str
    uuid: str
    status: TaskStatus
    retry: bool


@final
@dataclass(frozen=True, slots=True)
class UpdateAcknowledged:
    """Effect: the framework acknowledged this update; ``stream_closed`` once a terminal one is acked."""

    framework_id: str
    task_id: str
    uuid: str
    status: TaskStatus
    stream_closed: bool


Effect = ForwardUpdate | UpdateAcknowledged


@final
@dataclass(frozen=True, slots=True)
class StatusUpdateSnapshot:
    """What the manager holds: streams, updates waiting in them, and whether it is paused."""

    streams: int
    pending_updates: int
    paused: bool


@dataclass(slots=True)
class _Stream:
    framework_id: str
    task_id: str
    pending: deque[TaskStatus] = field(default_factory=deque)
    seen_uuids: set[str] = field(default_factory=set)
    retry_at: float | None = None
    backoff_s: float = RETRY_INITIAL_S


@final
class StatusUpdateManager:
    """Per-task update streams: forward the head, back off, pop on the matching ack, replay on resume."""

    def __init__(self, retry_initial_s: float = RETRY_INITIAL_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._streams: dict[StreamKey, _Stream] = {}
        # (retry_at, seq, key): stale entries are skipped lazily, so scheduling a retry is O(log n).
        self._timers: list[tuple[float, int, StreamKey]] = []
        self._timer_seq = 0
        self._paused = True

    def update(self, framework_id: str, status: TaskStatus, now: float) -> list[Effect]:
        """Queue an update on its task's stream; forward it when it is the head and the manager runs.

        Raises:
            ValidationError: the update carries no uuid (only reliable updates belong here).
        """
        if not status.uuid:
            raise ValidationError("status.uuid", "a reliable status update needs a uuid")
        key = (framework_id, status.task_id.value)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(framework_id, status.task_id.value)
        if status.uuid in stream.seen_uuids:
            return []  # a duplicate, as Mesos ignores one it has already received
        stream.seen_uuids.add(status.uuid)
        stream.pending.append(status)
        if len(stream.pending) > 1 or self._paused:
            return []
        return [self._forward(stream, now, retry=False)]

    def acknowledge(self, framework_id: str, task_id: str, uuid: str, now: float) -> list[Effect]:
        """Pop the head if ``uuid`` matches it and forward the next; acks for anything else are ignored."""
        key = (framework_id, task_id)
        stream = self._streams.get(key)
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return []
        acked = stream.pending.popleft()
        closed = acked.state in TERMINAL_STATES
        if closed:
            # Mesos closes the stream here; anything queued behind a terminal update is dropped with it.
            del self._streams[key]
        effects: list[Effect] = [UpdateAcknowledged(framework_id, task_id, uuid, acked, closed)]
        stream.retry_at = None
        stream.backoff_s = self._retry_initial_s
        if not closed and stream.pending and not self._paused:
            effects.append(self._forward(stream, now, retry=False))
        return effects

    def tick(self, now: float) -> list[Effect]:
        """Retry every head whose backoff has run out."""
        effects: list[Effect] = []
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            stream = self._streams.get(key)
            if stream is None or stream.retry_at != due or not stream.pending or self._paused:
                continue
            stream.backoff_s = min(stream.backoff_s * 2, self._retry_max_s)
            effects.append(self._forward(stream, now, retry=True))
        return effects

    def pause(self) -> None:
        """Stop forwarding (the master is gone); updates keep queueing."""
        self._paused = True

    def resume(self, now: float) -> list[Effect]:
        """Forward every stream's head again, with fresh backoff (after (re)registration)."""
        self._paused = False
        effects: list[Effect] = []
        for stream in self._streams.values():
            if stream.pending:
                stream.backoff_s = self._retry_initial_s
                effects.append(self._forward(stream, now, retry=True))
        return effects

    def next_retry_at(self) -> float | None:
        """When :meth:`tick` next has work, or None."""
        while self._timers:
            due, _, key = self._timers[0]
            stream = self._streams.get(key)
            if stream is not None and stream.retry_at == due and stream.pending and not self._paused:
                return due
            heapq.heappop(self._timers)
        return None

    def pending(self, framework_id: str, task_id: str) -> tuple[TaskStatus, ...]:
        """The updates of one task not yet acknowledged, head first."""
        stream = self._streams.get((framework_id, task_id))
        return tuple(stream.pending) if stream is not None else ()

    def remove_framework(self, framework_id: str) -> None:
        """Drop every stream of a framework that is gone (Mesos cleans up its streams likewise)."""
        for key in [key for key in self._streams if key[0] == framework_id]:
            del self._streams[key]

    def snapshot(self) -> StatusUpdateSnapshot:
        """Counts of streams and unacknowledged updates."""
        pending = sum(len(stream.pending) for stream in self._streams.values())
        return StatusUpdateSnapshot(len(self._streams), pending, self._paused)

    def _forward(self, stream: _Stream, now: float, retry: bool) -> ForwardUpdate:
        head = stream.pending[0]
        stream.retry_at = now + stream.backoff_s
        self._timer_seq += 1
        heapq.heappush(self._timers, (stream.retry_at, self._timer_seq, (stream.framework_id, stream.task_id)))
        assert head.uuid is not None
        return ForwardUpdate(stream.framework_id, stream.task_id, head.uuid, head, retry)
