"""An in-memory MarathonControl for the REST API's shell tests, built on the real planner.

Deployments stay "running" until :meth:`FakeControl.finish_deployments`, so locks can be tested; events are
fanned out to subscribers through asyncio queues; the clock moves only when a deployment is made.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from butte.core.errors import NotFound
from butte.frameworks.marathon.api import make_app
from butte.frameworks.marathon.control import (
    DeploymentStatus,
    KillResult,
    LockedByDeployments,
    QueueEntry,
)
from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup, iso_timestamp
from butte.frameworks.marathon.planner import plan as make_plan
from butte.wire.marathon import App, LastTaskFailure

START_S = 1_700_000_000.0

Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def api_client(control: FakeControl, *, advertised: str = "127.0.0.1:8080") -> AsyncIterator[Client]:
    """A test client of ``make_app(control)`` on loopback."""
    app = make_app(control, http_port=8080, advertised=advertised)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def instance(app_id: str, n: int, **fields: Any) -> Instance:
    """The ``n``-th task of an app, running on ``agent-<n>`` unless ``fields`` say otherwise."""
    base: dict[str, Any] = {
        "task_id": f"{app_id.strip('/').replace('/', '_')}.task-{n}",
        "app_id": app_id,
        "version": "2023-11-14T22:13:20.000Z",
        "config_version": "2023-11-14T22:13:20.000Z",
        "agent_id": f"agent-{n}",
        "host": f"host-{n}",
        "staged_at": START_S,
        "ports": (31000 + n,),
        "state": "TASK_RUNNING",
        "started_at": START_S + 1,
    }
    return Instance(**(base | fields))


class Subscription:
    """One event subscriber: subscribed from creation, so nothing published afterwards is missed."""

    def __init__(self, subscribers: list[Subscription]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers = subscribers
        subscribers.append(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self.queue.get()

    async def aclose(self) -> None:
        if self in self._subscribers:
            self._subscribers.remove(self)


class FakeControl:
    """MarathonControl over plain dicts; every change is checked against the running deployments' locks."""

    def __init__(self, *, leader: str | None = "127.0.0.1:8080", leading: bool = True) -> None:
        self.clock_s = START_S
        self.current = RootGroup()
        self.running: list[DeploymentStatus] = []
        self.tasks: dict[str, Instance] = {}
        self.versions: dict[str, dict[str, App]] = {}
        self.roots: dict[str, RootGroup] = {}
        self.failures: dict[str, LastTaskFailure] = {}
        self.queued: list[QueueEntry] = []
        self.published: list[dict[str, Any]] = []
        self.subscribers: list[Subscription] = []
        self.leader_address = leader
        self.leading = leading
        self.abdicated = False
        self.restarts: list[frozenset[str]] = []
        self._ids = itertools.count(1)

    # --- test set-up ------------------------------------------------------------------------------------
    def add_instance(self, instance: Instance) -> None:
        self.tasks[instance.task_id] = instance

    def finish_deployments(self) -> None:
        self.running.clear()

    # --- reads -------------------------------------------------------------------------------------------
    def root(self) -> RootGroup:
        return self.current

    def instances(self, app_id: str | None = None) -> Sequence[Instance]:
        return [i for i in self.tasks.values() if app_id is None or i.app_id == app_id]

    async def app_versions(self, app_id: str) -> Sequence[str]:
        if app_id not in self.versions:
            raise NotFound(f"App '{app_id}' does not exist")
        return sorted(self.versions[app_id], reverse=True)

    async def app_version(self, app_id: str, version: str) -> App:
        try:
            return self.versions[app_id][version]
        except KeyError:
            raise NotFound(f"App '{app_id}' does not exist in version {version}") from None

    async def group_versions(self, group_id: str) -> Sequence[str]:
        found = sorted((v for v, root in self.roots.items() if group_id in root.groups), reverse=True)
        if not found:
            raise NotFound(f"Group '{group_id}' does not exist")
        return found

    async def root_version(self, version: str) -> RootGroup:
        if version not in self.roots:
            raise NotFound(f"Group version {version} does not exist")
        return self.roots[version]

    def deployments(self) -> Sequence[DeploymentStatus]:
        return list(self.running)

    def queue(self) -> Sequence[QueueEntry]:
        return list(self.queued)

    def last_task_failure(self, app_id: str) -> LastTaskFailure | None:
        return self.failures.get(app_id)

    def framework_id(self) -> str | None:
        return "fake-framework-0001"

    def leader(self) -> str | None:
        return self.leader_address

    def is_leader(self) -> bool:
        return self.leading

    def now(self) -> float:
        return self.clock_s

    # --- changes -----------------------------------------------------------------------------------------
    async def deploy(self, target: RootGroup, *, force: bool, restart: frozenset[str] = frozenset()) -> DeploymentPlan:
        version = target.version or iso_timestamp(self.clock_s)
        new = make_plan(self.current, target, deployment_id=f"dep-{next(self._ids)}", version=version, restart=restart)
        locked = [s.plan.id for s in self.running if set(s.plan.affected_apps) & set(new.affected_apps)]
        if locked and not force:
            raise LockedByDeployments(locked)
        self.running = [s for s in self.running if s.plan.id not in locked]
        self._store(target)
        self.restarts.append(restart)
        if new.steps:
            self.running.append(DeploymentStatus(plan=new, current_step=1))
        self.clock_s += 1.0
        return new

    def _store(self, target: RootGroup) -> None:
        self.current = target
        self.roots[target.version or iso_timestamp(self.clock_s)] = target
        for app_id, app in target.apps.items():
            self.versions.setdefault(app_id, {})[app.version or ""] = app

    async def kill(self, task_ids: Sequence[str], *, scale: bool, wipe: bool, force: bool) -> KillResult:
        unknown = [t for t in task_ids if t not in self.tasks]
        if unknown:
            raise NotFound(f"Task '{unknown[0]}' does not exist")
        killed = tuple(self.tasks.pop(t) for t in task_ids)
        if not scale:
            return KillResult(killed=killed)
        apps = dict(self.current.apps)
        for instance in killed:
            app = apps[instance.app_id]
            apps[instance.app_id] = msgspec.structs.replace(app, instances=app.instances - 1)
        target = RootGroup(apps=apps, groups=self.current.groups, version=iso_timestamp(self.clock_s))
        return KillResult(killed=killed, deployment=await self.deploy(target, force=force))

    async def cancel_deployment(self, deployment_id: str, *, force: bool) -> DeploymentPlan | None:
        found = [s for s in self.running if s.plan.id == deployment_id]
        if not found:
            raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
        self.running.remove(found[0])
        if force:
            return None
        return await self.deploy(found[0].plan.original, force=True)

    async def reset_delay(self, app_id: str) -> None:
        if all(entry.app.id != app_id for entry in self.queued):
            raise NotFound(f"Application {app_id} not found in tasks queue.")

    async def abdicate(self) -> None:
        self.abdicated = True

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return Subscription(self.subscribers)

    def publish(self, event_type: str, fields: dict[str, Any]) -> None:
        event = {"eventType": event_type, "timestamp": iso_timestamp(self.clock_s), **fields}
        self.published.append(event)
        for subscriber in list(self.subscribers):
            subscriber.queue.put_nowait(event)

    def info(self) -> dict[str, Any]:
        return {
            "marathon_config": {"master": "127.0.0.1:5050", "ha": True, "not_a_client_key": 1},
            "zookeeper_config": {"zk": "zk://127.0.0.1:2181/marathon", "zk_timeout": 10000},
            "http_config": {"https_port": 8443},
        }
