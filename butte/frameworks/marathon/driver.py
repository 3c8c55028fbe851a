"""Carries out what Marathon's core decided: Mesos calls, store writes, events, health and readiness probes.

Instance writes are coalesced: status updates arrive in bursts (three per task on a deployment of a thousand),
so they are written in one transaction per burst by a background flusher, while a launch first waits for its
instances to be written (a crash must never leave a task running that the store does not know).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, final

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.bus import EventBus
from butte.frameworks.marathon.health import HealthProbe
from butte.frameworks.marathon.model import Instance
from butte.frameworks.marathon.readiness import ReadinessProbe
from butte.frameworks.marathon.store import MarathonStore
from butte.scheduler.calls import launch_operation
from butte.scheduler.errors import CallFailed, Disconnected
from butte.scheduler.sdk import SchedulerClient

log = logging.getLogger(__name__)

EventRenderer = Callable[[dict[str, Any]], dict[str, Any]]


@final
class InstanceWriter:
    """Pending instance writes (a task id maps to its newest value, or None for a delete), flushed together."""

    def __init__(self, store: MarathonStore) -> None:
        self._store = store
        self._pending: dict[str, Instance | None] = {}
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._flush_forever())

    def put(self, instances: Sequence[Instance]) -> None:
        for instance in instances:
            self._pending[instance.task_id] = instance
        self._wakeup.set()

    def delete(self, task_id: str) -> None:
        self._pending[task_id] = None
        self._wakeup.set()

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, {}
            saves = [instance for instance in pending.values() if instance is not None]
            if saves:
                await self._store.save_instances(saves)
            for task_id, instance in pending.items():
                if instance is None:
                    await self._store.delete_instance(task_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("marathon: writing instances failed; retrying with the next change")


@final
class EffectRunner:
    """Runs effects in order. Mesos calls made while disconnected are dropped: offers die with the stream,
    kills are repeated by the next reconciliation, and launches come back as TASK_LOST/unknown."""

    def __init__(
        self,
        client: SchedulerClient,
        store: MarathonStore,
        bus: EventBus,
        probe: HealthProbe,
        render_event: EventRenderer,
        readiness: ReadinessProbe | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._bus = bus
        self._probe = probe
        self._render = render_event
        self._readiness = readiness
        self.writer = InstanceWriter(store)

    async def run(self, effects: Sequence[fx.Effect]) -> None:
        for effect in effects:
            try:
                await self._run_one(effect)
            except (Disconnected, CallFailed) as exc:
                log.info("marathon: %s not sent: %s", type(effect).__name__, exc)

    async def _run_one(self, effect: fx.Effect) -> None:
        match effect:
            case fx.SaveInstances(instances):
                self.writer.put(instances)
            case fx.DeleteInstance(task_id):
                self.writer.delete(task_id)
            case fx.LaunchTasks(offer_id, tasks):
                await self.writer.flush()
                await self._client.accept([offer_id], [launch_operation(tasks)], refuse_seconds=0.0)
            case fx.DeclineOffers(offer_ids, refuse_seconds):
                await self._client.decline(offer_ids, refuse_seconds)
            case fx.KillTask(task_id, agent_id, grace_period_s):
                await self._client.kill(task_id, agent_id, grace_period_s)
            case fx.Revive():
                await self._client.revive()
            case fx.Suppress():
                await self._client.suppress()
            case fx.ReconcileTasks(tasks):
                await self._client.reconcile(tasks)
            case fx.SaveRoot(root):
                await self._store.save_root(root)
            case fx.SaveDeployment(plan, current_step):
                await self._store.save_deployment(plan, current_step)
            case fx.DeleteDeployment(deployment_id):
                await self._store.delete_deployment(deployment_id)
            case fx.Publish(event_type, fields):
                self._bus.publish(event_type, self._render(fields))
            case fx.WatchHealth(instance, checks):
                self._probe.watch(instance.task_id, instance.host, instance.ports, checks, instance.started_at or 0.0)
            case fx.UnwatchHealth(task_id):
                self._probe.unwatch(task_id)
            case fx.WatchReadiness(instance, check, port) if self._readiness is not None:
                self._readiness.watch(instance.task_id, instance.app_id, instance.host, port, check)
            case fx.UnwatchReadiness(task_id) if self._readiness is not None:
                self._readiness.unwatch(task_id)
