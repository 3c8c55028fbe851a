"""``butte marathon``'s running framework: the core, the Mesos connection, the store and the event bus.

One asyncio task consumes the Mesos event stream, one ticks the core's timers, and every batch of effects is
carried out by a single runner in the order the core produced them; REST calls wait for their batch, so an
answered change is durable. Implements :class:`~.control.MarathonControl` for the REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, final

import msgspec

from butte.core.errors import NotFound
from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.bus import EventBus
from butte.frameworks.marathon.control import DeploymentStatus, KillResult, LockedByDeployments, QueueEntry
from butte.frameworks.marathon.core import MarathonCore
from butte.frameworks.marathon.driver import EffectRunner
from butte.frameworks.marathon.events import render_event
from butte.frameworks.marathon.groups import stamp_versions
from butte.frameworks.marathon.health import HealthProbe
from butte.frameworks.marathon.launcher import MAX_INSTANCES_PER_OFFER
from butte.frameworks.marathon.model import DeploymentPlan, HealthResult, Instance, RootGroup, iso_timestamp
from butte.frameworks.marathon.readiness import ReadinessProbe
from butte.frameworks.marathon.readinessbook import ReadinessResult
from butte.frameworks.marathon.store import MarathonStore
from butte.master.leadership import Contender, LeaderView
from butte.master.leadership.standalone import StandaloneContender
from butte.scheduler.sdk import ConnectionLost, SchedulerClient
from butte.wire.base import ID
from butte.wire.marathon import App, LastTaskFailure
from butte.wire.mesos import Capability, FrameworkInfo
from butte.wire.scheduler import Event

log = logging.getLogger(__name__)

ONE_WEEK_S: Final = 7 * 24 * 3600.0
"""Marathon registers with a one-week failover timeout, so its tasks outlive a long outage of Marathon."""


@final
@dataclass(frozen=True, slots=True)
class MarathonConfig:
    master: str
    http_port: int = 8080
    hostname: str = "127.0.0.1"
    framework_name: str = "marathon"
    mesos_role: str = "*"
    user: str = ""
    tick_s: float = 1.0
    reconciliation_interval_s: float = 600.0
    zk: str | None = None
    seed: int | None = None
    max_instances_per_offer: int = MAX_INSTANCES_PER_OFFER

    @property
    def advertised(self) -> str:
        return f"{self.hostname}:{self.http_port}"


@final
class MarathonService:
    """See the module docstring. Start with :meth:`start`, end with :meth:`close`."""

    def __init__(self, config: MarathonConfig, store: MarathonStore) -> None:
        self.config = config
        self._store = store
        self._bus = EventBus(time.time)
        self._probe = HealthProbe(self._on_health, clock=time.time)
        self._readiness = ReadinessProbe(self._on_readiness)
        self._core: MarathonCore | None = None
        self._client: SchedulerClient | None = None
        self._runner: EffectRunner | None = None
        self._framework_id: str | None = None
        self._batches: asyncio.Queue[tuple[list[fx.Effect], asyncio.Future[None]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._leading = False
        self._leader: str | None = None
        self._contender: Contender | None = None
        self._lead_task: asyncio.Task[None] | None = None
        self.deposed = asyncio.Event()
        self.started_at = time.time()

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def start(self, contender: Contender | None = None) -> None:
        """Join the election (alone without ``contender``: lead at once) and serve once elected.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        self._contender = contender or StandaloneContender()
        await self._contender.start(self._on_view)
        if self._lead_task is not None:
            await self._lead_task

    def _on_view(self, view: LeaderView) -> None:
        info = view.leader_info or {}
        self._leader = f"{info['hostname']}:{info['port']}" if "hostname" in info and "port" in info else None
        if view.leading and not self._leading and self._lead_task is None:
            self._leading = True
            self._leader = self.config.advertised
            self._lead_task = asyncio.ensure_future(self._lead())
        elif not view.leading and self._leading:
            # Marathon exits when it loses leadership; whatever supervises it starts it again as a standby.
            log.error("marathon: lost leadership; stopping")
            self._leading = False
            self.deposed.set()

    async def _lead(self) -> None:
        log.info("marathon: elected leader; loading state")
        state = await self._store.load()
        self._framework_id = state.framework_id
        rng = random.Random(self.config.seed)
        self._core = MarathonCore(
            root=state.root,
            instances=state.instances,
            deployments=state.deployments,
            rng=rng,
            max_instances_per_offer=self.config.max_instances_per_offer,
        )
        self._client = SchedulerClient(self.config.master, self._framework_info(), rng=random.Random(rng.random()))
        self._runner = EffectRunner(
            self._client, self._store, self._bus, self._probe, render_event, readiness=self._readiness
        )
        self._runner.writer.start()
        for loop in (self._run_batches(), self._consume_mesos(), self._tick_forever(), self._reconcile_forever()):
            self._tasks.append(asyncio.ensure_future(loop))

    async def close(self) -> None:
        if self._contender is not None:
            await self._contender.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._bus.close()
        await self._probe.close()
        await self._readiness.close()
        if self._runner is not None:
            await self._runner.writer.close()
        if self._client is not None:
            await self._client.close()
        await self._store.close()

    def _framework_info(self) -> FrameworkInfo:
        capabilities = ["PARTITION_AWARE", "TASK_KILLING_STATE", "GPU_RESOURCES"]
        return FrameworkInfo(
            user=self.config.user or getpass.getuser(),
            name=self.config.framework_name,
            id=ID(value=self._framework_id) if self._framework_id else None,
            failover_timeout=ONE_WEEK_S,
            checkpoint=True,
            role=self.config.mesos_role,
            hostname=self.config.hostname or socket.gethostname(),
            webui_url=f"http://{self.config.advertised}",
            capabilities=[Capability(type=name) for name in capabilities],
        )

    @property
    def core(self) -> MarathonCore:
        if self._core is None:
            raise RuntimeError("MarathonService.start() has not run")
        return self._core

    # --- loops -------------------------------------------------------------------------------------------
    async def _submit(self, effects: list[fx.Effect]) -> None:
        """Queue a batch of effects behind every earlier one; returns once it has been carried out."""
        if not effects:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batches.put_nowait((effects, done))
        await done

    async def _run_batches(self) -> None:
        assert self._runner is not None
        while True:
            effects, done = await self._batches.get()
            try:
                await self._runner.run(effects)
            except Exception as exc:
                log.exception("marathon: carrying out effects failed")
                if not done.done():
                    done.set_exception(exc)
                continue
            if not done.done():
                done.set_result(None)

    async def _consume_mesos(self) -> None:
        assert self._client is not None
        subscribed = await self._client.subscribe()
        await self._on_subscribed(subscribed.framework_id.value)
        async for event in self._client.events():
            try:
                await self._on_mesos_event(event)
            except Exception:
                log.exception("marathon: handling a %s event failed", event.type)

    async def _on_mesos_event(self, event: Event | ConnectionLost) -> None:
        if isinstance(event, ConnectionLost):
            log.info("marathon: lost the master (%s); resubscribing", event.reason)
        elif event.subscribed is not None:
            await self._on_subscribed(event.subscribed.framework_id.value)
        elif event.offers is not None:
            # One offer at a time: filling a big offer builds hundreds of tasks, and the REST API shares the loop.
            for offer in event.offers.offers:
                await self._submit(self.core.on_offers([offer], time.time()))
        elif event.update is not None:
            await self._submit(self.core.on_status(event.update.status, time.time()))
        elif event.error is not None:
            log.error("marathon: the master says: %s", event.error.message)

    async def _on_subscribed(self, framework_id: str) -> None:
        if framework_id != self._framework_id:
            self._framework_id = framework_id
            await self._store.save_framework_id(framework_id)
        log.info("marathon: subscribed as framework %s", framework_id)
        await self._submit(self.core.on_subscribed() + self.core.progress(time.time()))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            await self._submit(self.core.tick(time.time()))

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconciliation_interval_s)
            if self._client is not None and self._client.snapshot().connected:
                await self._submit(self.core.on_subscribed())

    def _on_health(self, task_id: str, check_index: int, result: HealthResult) -> None:
        effects = self.core.on_health(task_id, check_index, result, time.time())
        task = asyncio.ensure_future(self._submit(effects))
        task.add_done_callback(_log_failure)

    def _on_readiness(self, task_id: str, result: ReadinessResult) -> None:
        effects = self.core.on_readiness(task_id, result, time.time())
        task = asyncio.ensure_future(self._submit(effects))
        task.add_done_callback(_log_failure)

    # --- MarathonControl: reads --------------------------------------------------------------------------
    def root(self) -> RootGroup:
        return self.core.root

    def instances(self, app_id: str | None = None) -> Sequence[Instance]:
        return self.core.book.of_app(app_id) if app_id is not None else list(self.core.book)

    async def app_versions(self, app_id: str) -> Sequence[str]:
        if app_id not in self.core.root.apps:
            raise NotFound(f"App '{app_id}' does not exist")
        return await self._store.app_versions(app_id)

    async def app_version(self, app_id: str, version: str) -> App:
        app = await self._store.app_version(app_id, version)
        if app is None:
            raise NotFound(f"App '{app_id}' does not exist in version {version}")
        return app

    async def group_versions(self, group_id: str) -> Sequence[str]:
        if group_id not in self.core.root.groups:
            raise NotFound(f"Group '{group_id}' does not exist")
        return await self._store.root_versions()

    async def root_version(self, version: str) -> RootGroup:
        root = await self._store.root_version(version)
        if root is None:
            raise NotFound(f"Group version {version} does not exist")
        return root

    def deployments(self) -> Sequence[DeploymentStatus]:
        # Readiness results live with the deployment whose step probes them, as Marathon shows them.
        statuses = self.core.deployments.statuses()
        return [replace(s, readiness=self.core.readiness.results(s.plan.affected_apps)) for s in statuses]

    def queue(self) -> Sequence[QueueEntry]:
        return self.core.queue_entries(time.time())

    def last_task_failure(self, app_id: str) -> LastTaskFailure | None:
        return self.core.last_failures.get(app_id)

    def health_results(self, task_id: str) -> list[HealthResult]:
        return self.core.health_results(task_id)

    def framework_id(self) -> str | None:
        return self._framework_id

    def leader(self) -> str | None:
        return self._leader if self._core is not None or not self._leading else None

    def is_leader(self) -> bool:
        """True once elected and the state is loaded (until then the leader answers 502, as with none)."""
        return self._leading and self._core is not None

    def now(self) -> float:
        return time.time()

    # --- MarathonControl: changes ------------------------------------------------------------------------
    async def deploy(self, target: RootGroup, *, force: bool, restart: frozenset[str] = frozenset()) -> DeploymentPlan:
        plan, effects = self.core.deploy(
            target, deployment_id=str(uuid.uuid4()), force=force, restart=restart, now=time.time()
        )
        await self._submit(effects)
        return plan

    async def kill(self, task_ids: Sequence[str], *, scale: bool, wipe: bool, force: bool) -> KillResult:
        if not scale:
            result, effects = self.core.kill(task_ids, wipe=wipe, now=time.time())
            await self._submit(effects)
            return result
        target = self._scaled_down(task_ids)
        killed = tuple(self.core.book.get(task_id) for task_id in task_ids)
        holders = self.core.deployments.holding(sorted({i.app_id for i in killed if i is not None}))
        if holders and not force:
            raise LockedByDeployments(holders)
        effects = self.core.kill_marked(task_ids)
        plan = await self.deploy(target, force=force)
        await self._submit(effects)
        return KillResult(killed=tuple(i for i in killed if i is not None), deployment=plan)

    def _scaled_down(self, task_ids: Sequence[str]) -> RootGroup:
        """The root with each app's ``instances`` lowered by the number of its tasks in ``task_ids``."""
        current = self.core.root
        apps = dict(current.apps)
        for task_id in task_ids:
            instance = self.core.book.get(task_id)
            if instance is None:
                raise NotFound(f"Task '{task_id}' does not exist")
            app = apps.get(instance.app_id)
            if app is not None:
                apps[app.id] = msgspec.structs.replace(app, instances=max(0, app.instances - 1))
        version = iso_timestamp(time.time())
        return stamp_versions(current, RootGroup(apps=apps, groups=current.groups, version=version), version=version)

    async def cancel_deployment(self, deployment_id: str, *, force: bool) -> DeploymentPlan | None:
        plan, effects = self.core.cancel_deployment(
            deployment_id,
            force=force,
            rollback_id=str(uuid.uuid4()),
            version=iso_timestamp(time.time()),
            now=time.time(),
        )
        await self._submit(effects)
        return plan

    async def reset_delay(self, app_id: str) -> None:
        await self._submit(self.core.reset_delay(app_id, time.time()))

    async def abdicate(self) -> None:
        # As Marathon: the leader steps down by exiting (after this answer); a standby is elected.
        log.warning("marathon: abdicating on request")
        asyncio.get_running_loop().call_later(0.2, self.deposed.set)

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return self._bus.subscribe()

    def publish(self, event_type: str, fields: dict[str, Any]) -> None:
        self._bus.publish(event_type, fields)

    def info(self) -> dict[str, Any]:
        return {
            "marathon_config": {
                "master": self.config.master,
                "framework_name": self.config.framework_name,
                "hostname": self.config.hostname,
                "mesos_role": self.config.mesos_role,
                "reconciliation_interval": int(self.config.reconciliation_interval_s * 1000),
                "ha": self.config.zk is not None,
            },
            "zookeeper_config": {"zk": self.config.zk} if self.config.zk else {},
            "http_config": {"http_port": self.config.http_port},
        }


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("marathon: applying a health or readiness result failed: %s", task.exception())
