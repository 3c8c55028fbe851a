"""Async client of the Mesos v1 scheduler API (``POST /api/v1/scheduler``), the base of Butte's frameworks.

    async with SchedulerClient("127.0.0.1:5050", FrameworkInfo(user="me", name="demo")) as client:
        await client.subscribe()
        async for event in client.events():
            if event.type == "OFFERS": ...

Behaviour worth knowing:
- ``events()`` yields every Mesos event after the first SUBSCRIBED (HEARTBEAT included). When the stream
  breaks it yields :class:`ConnectionLost` and resubscribes with the framework id (failover), with jittered
  doubling backoff; success yields a new SUBSCRIBED event (reconcile then). An ERROR event is yielded and
  then the iteration ends: the master removed the framework or another instance took over.
- Calls made while no stream is open raise :class:`Disconnected` at once rather than waiting: offers die
  with the stream anyway, and an unacknowledged update is simply sent again by the agent.
- With ``auto_acknowledge`` an UPDATE carrying a ``uuid`` is acknowledged when the consumer asks for the next
  event, i.e. after handling it (Mesos delivers at least once). Acks go out concurrently, in the background.
- Only one consumer may iterate ``events()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, final

import aiohttp

from butte.core.errors import ButteError
from butte.scheduler import calls
from butte.scheduler.backoff import Backoff
from butte.scheduler.connection import SchedulerEndpoint
from butte.scheduler.detector import MasterDetector, detector_for
from butte.scheduler.errors import (
    CallFailed,
    Disconnected,
    FailedOver,
    SubscribeRefused,
)
from butte.scheduler.subscription import ConnectionLost, SchedulerEvent, Subscription
from butte.scheduler.tasks import claim_scalars, command_info, command_task, offer_resources, scalar_resources
from butte.wire.mesos import ExecutorInfo, FrameworkInfo, Offer, OfferOperation, TaskInfo, TaskStatus
from butte.wire.scheduler import Call, Event, Subscribed

__all__ = [
    "CallFailed",
    "ConnectionLost",
    "Disconnected",
    "FailedOver",
    "SchedulerClient",
    "SchedulerClientSnapshot",
    "SchedulerEvent",
    "SubscribeRefused",
    "claim_scalars",
    "command_info",
    "command_task",
    "offer_resources",
    "scalar_resources",
]

log = logging.getLogger(__name__)

_ACK_FLUSH_S: Final = 2.0
"""How long close() waits for acks in flight; one not sent only means the agent sends that update again."""


@final
@dataclass(frozen=True, slots=True)
class SchedulerClientSnapshot:
    """What the client is doing, for tests, metrics and debugging."""

    framework_id: str | None
    master: str | None
    connected: bool
    subscriptions: int
    calls_sent: int
    acks_in_flight: int
    disconnect_reason: str


@final
class SchedulerClient:
    """A framework's connection to the leading master; see the module docstring for its behaviour."""

    def __init__(
        self,
        master: str | MasterDetector,
        framework_info: FrameworkInfo,
        *,
        auto_acknowledge: bool = True,
        session: aiohttp.ClientSession | None = None,
        reconnect: bool = True,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 15.0,
        call_timeout_s: float = 30.0,
        max_concurrent_acks: int = 32,
        rng: random.Random | None = None,
    ) -> None:
        """Nothing happens on the network until :meth:`subscribe`.

        Raises:
            ValidationError: ``master`` is not ``host[:port]`` (``zk://`` is not supported yet).
        """
        self._detector = detector_for(master) if isinstance(master, str) else master
        self._owns_detector = isinstance(master, str)
        self._framework_info = framework_info
        self._auto_acknowledge = auto_acknowledge
        self._session = session
        self._owns_session = session is None
        self._reconnect = reconnect
        self._backoff = Backoff(initial_backoff_s, max_backoff_s, rng or random.Random())
        self._call_timeout_s = call_timeout_s
        self._ack_slots = asyncio.Semaphore(max_concurrent_acks)
        self._acks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self._calls_sent = 0

    async def __aenter__(self) -> SchedulerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def framework_id(self) -> str | None:
        """The id the master gave (or the one passed in ``framework_info.id`` to fail over to)."""
        if self._subscription is not None:
            return self._subscription.framework_id
        return self._framework_info.id.value if self._framework_info.id is not None else None

    async def subscribe(self, timeout_s: float | None = None) -> Subscribed:
        """Open the event stream; returns the SUBSCRIBED event's body.

        Raises:
            SubscribeRefused: the master answered with an ERROR event (bad roles, unauthorized, removed).
            CallFailed: the master rejected the call outright (400, 401, ...).
            Disconnected: no subscription within ``timeout_s`` (None: keep trying).
            RuntimeError: subscribe already succeeded (resubscription is automatic).
        """
        if self._subscription is not None:
            raise RuntimeError("subscribe() succeeds once per SchedulerClient; it resubscribes by itself")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        endpoint = SchedulerEndpoint(self._session, call_timeout_s=self._call_timeout_s)
        subscription = Subscription(
            endpoint,
            self._detector,
            self._framework_info,
            reconnect=self._reconnect,
            backoff=self._backoff,
            first_event_timeout_s=self._call_timeout_s,
        )
        self._subscription = subscription
        try:
            return await subscription.open(timeout_s)
        except BaseException:
            self._subscription = None  # a failed subscribe may be tried again
            raise

    async def events(self) -> AsyncIterator[SchedulerEvent]:
        """Every event after the first SUBSCRIBED, plus :class:`ConnectionLost`; ends when the client stops.

        Raises:
            Disconnected: subscribe() has not been called.
        """
        subscription = self._require_subscription()
        while True:
            item = await subscription.events.get()
            if item is None:
                subscription.events.put_nowait(None)  # stay ended for any later iteration
                return
            yield item
            if self._auto_acknowledge and isinstance(item, Event) and item.update is not None:
                self._acknowledge_in_background(item.update.status)

    async def accept(
        self,
        offer_ids: Sequence[str],
        operations: Sequence[OfferOperation],
        refuse_seconds: float | None = None,
    ) -> None:
        """ACCEPT offers with operations; resources left unused are declined.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.accept_call(self._require_id(), offer_ids, operations, refuse_seconds))

    async def launch(
        self, offer: Offer | Sequence[Offer], tasks: Sequence[TaskInfo], refuse_seconds: float | None = None
    ) -> None:
        """ACCEPT one or more offers (from one agent) with a single LAUNCH of ``tasks``.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        offers = [offer] if isinstance(offer, Offer) else list(offer)
        offer_ids = [o.id.value for o in offers]
        await self.accept(offer_ids, [calls.launch_operation(tasks)], refuse_seconds)

    async def launch_group(
        self,
        offer: Offer | Sequence[Offer],
        executor: ExecutorInfo,
        tasks: Sequence[TaskInfo],
        refuse_seconds: float | None = None,
    ) -> None:
        """ACCEPT with one LAUNCH_GROUP: ``tasks`` start together under ``executor``.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        offers = [offer] if isinstance(offer, Offer) else list(offer)
        operation = calls.launch_group_operation(executor, tasks)
        await self.accept([o.id.value for o in offers], [operation], refuse_seconds)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        """DECLINE offers; ``refuse_seconds`` keeps their resources away that long (master default 5 s).

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.decline_call(self._require_id(), offer_ids, refuse_seconds))

    async def revive(self, roles: Sequence[str] | None = None) -> None:
        """REVIVE: clear offer filters and unsuppress (all roles when none given).

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.revive_call(self._require_id(), roles))

    async def suppress(self, roles: Sequence[str] | None = None) -> None:
        """SUPPRESS offers (all roles when none given) until REVIVE.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.suppress_call(self._require_id(), roles))

    async def kill(self, task_id: str, agent_id: str | None = None, grace_period_s: float | None = None) -> None:
        """KILL a task; the outcome arrives as an UPDATE (TASK_KILLED, or TASK_LOST if unknown).

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.kill_call(self._require_id(), task_id, agent_id, grace_period_s))

    async def shutdown(self, executor_id: str, agent_id: str) -> None:
        """SHUTDOWN an executor and its tasks.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.shutdown_call(self._require_id(), executor_id, agent_id))

    async def acknowledge(self, status: TaskStatus) -> None:
        """ACKNOWLEDGE a status update; does nothing for updates without a ``uuid`` (made by the master).

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        call = calls.acknowledge_call(self._require_id(), status)
        if call is not None:
            await self._send(call)

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]] = ()) -> None:
        """RECONCILE ``(task_id, agent_id)`` pairs; with none, implicit reconciliation of every task.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.reconcile_call(self._require_id(), tasks))

    async def message(self, agent_id: str, executor_id: str, data: bytes) -> None:
        """MESSAGE: hand ``data`` to an executor.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        await self._send(calls.message_call(self._require_id(), agent_id, executor_id, data))

    async def update_framework(self, framework_info: FrameworkInfo, suppressed_roles: Sequence[str] = ()) -> None:
        """UPDATE_FRAMEWORK; later resubscriptions use the new info too.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        call = calls.update_framework_call(self._require_id(), framework_info, suppressed_roles)
        await self._send(call)
        subscription = self._require_subscription()
        assert call.update_framework is not None
        subscription.framework_info = call.update_framework.framework_info
        subscription.suppressed_roles = tuple(suppressed_roles)

    async def teardown(self) -> None:
        """TEARDOWN: the master kills every task and forgets the framework; then the client closes.

        Raises:
            Disconnected: no stream is open (or no answer came); CallFailed: the master said no.
        """
        framework_id = self._require_id()
        await self._flush_acks()  # acks sent after TEARDOWN would only earn "Framework cannot be found"
        await self._send(calls.teardown_call(framework_id))
        await self.close()

    async def close(self) -> None:
        """Close the stream (without TEARDOWN: the framework can fail over), flush acks, end ``events()``."""
        await self._flush_acks()
        if self._subscription is not None:
            await self._subscription.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_detector:
            await self._detector.close()

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        pending = set(self._acks)
        await asyncio.wait(pending, timeout=_ACK_FLUSH_S)
        for ack in pending:
            ack.cancel()

    def snapshot(self) -> SchedulerClientSnapshot:
        """The client's state right now."""
        sub = self._subscription
        stream = sub.stream if sub is not None else None
        return SchedulerClientSnapshot(
            framework_id=self.framework_id,
            master=stream.master if stream is not None else None,
            connected=stream is not None,
            subscriptions=sub.subscriptions if sub is not None else 0,
            calls_sent=self._calls_sent,
            acks_in_flight=len(self._acks),
            disconnect_reason="" if stream is not None or sub is None else sub.disconnect_reason,
        )

    async def _send(self, call: Call) -> None:
        subscription = self._require_subscription()
        self._calls_sent += 1
        await subscription.send(call)

    def _require_subscription(self) -> Subscription:
        if self._subscription is None:
            raise Disconnected("not subscribed yet: call subscribe() first")
        return self._subscription

    def _require_id(self) -> str:
        framework_id = self._require_subscription().framework_id
        if framework_id is None:
            raise Disconnected("not subscribed yet: no framework id")
        return framework_id

    def _acknowledge_in_background(self, status: TaskStatus) -> None:
        if status.uuid is None:
            return
        task = asyncio.create_task(self._acknowledge_quietly(status))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _acknowledge_quietly(self, status: TaskStatus) -> None:
        async with self._ack_slots:
            try:
                await self.acknowledge(status)
            except ButteError as exc:
                # The agent resends unacknowledged updates, so a lost ack costs a duplicate, not an update.
                level = logging.INFO if isinstance(exc, Disconnected) else logging.WARNING
                log.log(level, "could not acknowledge %s of task %s: %s", status.state, status.task_id.value, exc)
