"""The life of a scheduler's event stream: subscribe, pump events, resubscribe (failover) after a break.

Mesos keeps one stream per framework. When it breaks (connection lost, no heartbeat for 5 intervals, a new
leader detected) the framework resubscribes with its id before ``failover_timeout`` runs out, and its tasks
survive. An ERROR event ends the stream for good: "Framework failed over" means another instance of the
scheduler took over, and every other ERROR means the master removed or refused the framework, which the
Mesos scheduler driver also treats as fatal (it aborts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, final

from butte.core.errors import ButteError
from butte.scheduler.backoff import Backoff
from butte.scheduler.calls import subscribe_call
from butte.scheduler.connection import EventStream, SchedulerEndpoint
from butte.scheduler.detector import MasterDetector
from butte.scheduler.errors import CallUnavailable, Disconnected, FailedOver, SubscribeRefused
from butte.wire.mesos import FrameworkInfo
from butte.wire.scheduler import Call, Event, Subscribed

log = logging.getLogger(__name__)

MISSED_HEARTBEATS: Final = 5
"""Reconnect after this many heartbeat intervals without any event (the Mesos docs' advice)."""
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 15.0


@final
@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """Not a Mesos event: the stream broke. Offers in hand are void; a SUBSCRIBED event follows on success."""

    reason: str
    type: Literal["DISCONNECTED"] = "DISCONNECTED"


SchedulerEvent = Event | ConnectionLost


@final
class Subscription:
    """Owns the stream: opens it, moves its events to :attr:`events`, and resubscribes after breaks."""

    def __init__(
        self,
        endpoint: SchedulerEndpoint,
        detector: MasterDetector,
        framework_info: FrameworkInfo,
        *,
        reconnect: bool,
        backoff: Backoff,
        first_event_timeout_s: float,
    ) -> None:
        self.framework_info = framework_info
        self.framework_id = framework_info.id.value if framework_info.id is not None else None
        self.suppressed_roles: Sequence[str] = ()
        self.stream: EventStream | None = None
        self.events: asyncio.Queue[SchedulerEvent | None] = asyncio.Queue()  # None: no more events
        self.ended: Disconnected | None = None
        self.last_failure = ""
        self.disconnect_reason = "not subscribed yet"
        self.subscriptions = 0
        self._endpoint = endpoint
        self._detector = detector
        self._reconnect = reconnect
        self._backoff = backoff
        self._first_event_timeout_s = first_event_timeout_s
        self._heartbeat_interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        self._leader: str | None = None
        self._runner: asyncio.Task[None] | None = None
        self._finished = False

    async def open(self, timeout_s: float | None) -> Subscribed:
        """Subscribe, retrying outages until ``timeout_s``; then keep the stream alive in the background.

        Raises:
            SubscribeRefused: the master answered with an ERROR event.
            CallFailed: the master rejected SUBSCRIBE (400, 401, ...).
            Disconnected: no subscription within ``timeout_s``; says what failed last.
        """
        try:
            async with asyncio.timeout(timeout_s):
                subscribed = await self._subscribe_until_done()
        except TimeoutError as exc:
            raise Disconnected(f"not subscribed after {timeout_s:g}s; last failure: {self.last_failure}") from exc
        self._runner = asyncio.create_task(self._keep_alive(), name="butte-scheduler-stream")
        return subscribed

    async def close(self) -> None:
        """Stop resubscribing, drop the stream and end :attr:`events`."""
        if self.ended is None:
            self.ended = Disconnected("the scheduler client is closed")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.disconnect_reason = "closed"
        self._finish(self.ended)

    async def send(self, call: Call) -> None:
        """POST a call on behalf of the current stream.

        Raises:
            Disconnected: no stream is open now (FailedOver once the master ended it), or no answer came.
            CallFailed: the master answered with a non-2xx status.
        """
        stream = self.stream
        if stream is None and self.ended is not None:
            raise self.ended.with_traceback(None)  # the same error every time, without old tracebacks
        if stream is None:
            raise Disconnected(f"not connected: {self.disconnect_reason}")
        await self._endpoint.send(stream.master, stream.stream_id, call)

    async def _subscribe_until_done(self) -> Subscribed:
        while True:
            try:
                return await self._subscribe_once()
            except (Disconnected, CallUnavailable) as exc:
                self.last_failure = str(exc)
            delay_s = self._backoff.next_delay_s()
            log.info("subscription failed (%s); retrying in %.2fs", self.last_failure, delay_s)
            await asyncio.sleep(delay_s)

    async def _subscribe_once(self) -> Subscribed:
        leader = await self._detector.leader()
        call = subscribe_call(self.framework_info, self.framework_id, self.suppressed_roles)
        stream = await self._endpoint.subscribe(leader, call)
        try:
            subscribed = _expect_subscribed(stream, await stream.next_event(self._first_event_timeout_s))
        except BaseException:  # cancelled too: never leave a half-open stream behind
            stream.close()
            raise
        self._on_subscribed(leader, stream, subscribed)
        return subscribed

    def _on_subscribed(self, leader: str, stream: EventStream, subscribed: Subscribed) -> None:
        self._leader = leader
        self.stream = stream
        self.framework_id = subscribed.framework_id.value
        self._heartbeat_interval_s = subscribed.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_INTERVAL_S
        self.subscriptions += 1
        self._backoff.reset()
        log.info("subscribed to %s as framework %s", stream.master, self.framework_id)

    async def _keep_alive(self) -> None:
        try:
            while self.ended is None and self.stream is not None:
                reason = await self._pump_until_leader_changes(self.stream)
                self._drop_stream(reason)
                if self.ended is not None:
                    break
                self.events.put_nowait(ConnectionLost(reason))
                if not self._reconnect:
                    self.ended = Disconnected(f"disconnected: {reason}")
                    break
                await self._resubscribe()
        finally:  # whatever happens, the consumer of events() must not wait forever
            self._finish(self.ended or Disconnected("the event stream ended"))

    async def _resubscribe(self) -> None:
        try:
            subscribed = await self._subscribe_until_done()
        except ButteError as exc:  # refused, removed, unauthorized: resubscribing again will not help
            self.ended = Disconnected(f"resubscription refused: {exc}")
            return
        self.events.put_nowait(Event(type="SUBSCRIBED", subscribed=subscribed))

    async def _pump_until_leader_changes(self, stream: EventStream) -> str:
        pump = asyncio.create_task(self._pump(stream))
        watch = asyncio.create_task(self._detector.next_leader(self._leader))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            pump.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if not pump.cancelled():
            return pump.result()
        failure = watch.exception()
        if failure is not None:
            return f"leader detection failed: {failure!r}"
        return f"a new leading master was detected at {watch.result()}"

    async def _pump(self, stream: EventStream) -> str:
        idle_timeout_s = MISSED_HEARTBEATS * self._heartbeat_interval_s
        while True:
            try:
                event = await stream.next_event(idle_timeout_s)
            except Disconnected as exc:
                return str(exc)
            if event is None:
                return f"{stream.master} closed the event stream"
            self.events.put_nowait(event)
            if event.type == "ERROR":
                self.ended = FailedOver(event.error.message if event.error is not None else "ERROR event")
                return f"ERROR event: {self.ended.message}"

    def _drop_stream(self, reason: str) -> None:
        if self.stream is not None:
            log.warning("lost the event stream from %s: %s", self.stream.master, reason)
            self.stream.close()
            self.stream = None
        self.disconnect_reason = reason

    def _finish(self, why: Disconnected) -> None:
        if self.ended is None:
            self.ended = why
        if not self._finished:
            self._finished = True
            self.events.put_nowait(None)


def _expect_subscribed(stream: EventStream, first: Event | None) -> Subscribed:
    if first is not None and first.subscribed is not None:
        return first.subscribed
    if first is not None and first.error is not None:
        raise SubscribeRefused(first.error.message)
    raise Disconnected(f"{stream.master} sent {first.type if first else 'nothing'} before SUBSCRIBED")
