"""Builders for driving :class:`MarathonCore` by hand: apps, offers, statuses, and a small harness with a clock.

Targets are made the way ``api/deployments.commit`` makes them: ``groups.with_app`` (or ``without_app``) on the
current root, then ``groups.stamp_versions`` with the version of the moment.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from butte.core.resources import Attributes, Resources
from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon import groups
from butte.frameworks.marathon.core import MarathonCore
from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup, iso_timestamp
from butte.frameworks.marathon.validation import parse_app
from butte.wire.base import ID
from butte.wire.marathon import App
from butte.wire.mesos import Offer, TaskStatus
from butte.wire.resources import attributes_to_wire, resources_to_wire

START_S = 1_700_000_000.0
BIG = "cpus:8;mem:4096;disk:1000;ports:[31000-31999]"
E = TypeVar("E")


def app(app_id: str = "/web", **fields: Any) -> App:
    """A validated app (camelCase keys, as a client sends them), small enough for several per offer."""
    body: dict[str, Any] = {"id": app_id, "cmd": "sleep 1000", "cpus": 0.5, "mem": 64, **fields}
    return parse_app(body)


_offer_ids = itertools.count(1)


def offer(host: str = "h1", resources: str = BIG, attributes: str = "") -> Offer:
    """A fresh offer (unique id) from the agent ``a-<host>``."""
    return Offer(
        id=ID(value=f"o{next(_offer_ids)}"),
        framework_id=ID(value="marathon"),
        agent_id=ID(value=f"a-{host}"),
        hostname=host,
        resources=resources_to_wire(Resources.parse(resources)),
        attributes=attributes_to_wire(Attributes.parse(attributes)),
    )


def status(task_id: str, state: str, *, healthy: bool | None = None, agent_id: str | None = None) -> TaskStatus:
    return TaskStatus(
        task_id=ID(value=task_id),
        state=state,  # type: ignore[arg-type]
        healthy=healthy,
        agent_id=ID(value=agent_id) if agent_id else None,
        message=f"went {state}",
    )


def of_type(effects: Iterable[fx.Effect], kind: type[E]) -> list[E]:
    return [effect for effect in effects if isinstance(effect, kind)]


def published(effects: Iterable[fx.Effect], event_type: str) -> list[dict[str, Any]]:
    return [e.fields for e in of_type(effects, fx.Publish) if e.event_type == event_type]


def launched(effects: Iterable[fx.Effect]) -> list[str]:
    """Task ids of every LAUNCH in ``effects``."""
    return [task.task_id.value for launch in of_type(effects, fx.LaunchTasks) for task in launch.tasks]


def killed(effects: Iterable[fx.Effect]) -> list[str]:
    return [kill.task_id for kill in of_type(effects, fx.KillTask)]


class Harness:
    """A core with an empty root, a seeded rng and a clock that only moves when a test says so."""

    def __init__(self, *, seed: int = 7, now: float = START_S) -> None:
        self.now = now
        self.core = MarathonCore(root=RootGroup(), rng=random.Random(seed))
        self._ids = itertools.count(1)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def target(self, *apps: App, removed: Sequence[str] = ()) -> RootGroup:
        """The current root with ``apps`` put and ``removed`` taken out, stamped at the current time."""
        root = self.core.root
        for one in apps:
            root = groups.with_app(root, one)
        for app_id in removed:
            root = groups.without_app(root, app_id)
        version = iso_timestamp(self.now)
        return groups.stamp_versions(self.core.root, root, version=version)

    def deploy(
        self, *apps: App, removed: Sequence[str] = (), force: bool = False, restart: Iterable[str] = ()
    ) -> tuple[DeploymentPlan, list[fx.Effect]]:
        """Deploy a target made of the current root with changes (1 ms later each time, so versions differ)."""
        self.advance(0.001)
        return self.core.deploy(
            self.target(*apps, removed=removed),
            deployment_id=f"d{next(self._ids)}",
            force=force,
            restart=frozenset(restart),
            now=self.now,
        )

    def restart(self, app_id: str) -> tuple[DeploymentPlan, list[fx.Effect]]:
        """What ``POST /v2/apps/{id}/restart`` deploys: the app with a new config version."""
        self.advance(0.001)
        version = iso_timestamp(self.now)
        restarted = groups.restarted(self.core.root.apps[app_id], version=version)
        return self.core.deploy(
            groups.with_app(self.core.root, restarted),
            deployment_id=f"d{next(self._ids)}",
            force=False,
            restart=frozenset({app_id}),
            now=self.now,
        )

    def offers(self, *offers: Offer) -> list[fx.Effect]:
        return self.core.on_offers(offers or (offer(),), self.now)

    def status(self, task_id: str, state: str, *, healthy: bool | None = None) -> list[fx.Effect]:
        return self.core.on_status(status(task_id, state, healthy=healthy), self.now)

    def tick(self) -> list[fx.Effect]:
        return self.core.tick(self.now)

    def run(self, task_ids: Iterable[str], *, healthy: bool | None = None) -> list[fx.Effect]:
        """TASK_RUNNING for each task; the effects of all of them."""
        effects: list[fx.Effect] = []
        for task_id in task_ids:
            effects += self.status(task_id, "TASK_RUNNING", healthy=healthy)
        return effects

    def finish_kills(self, effects: Iterable[fx.Effect]) -> list[fx.Effect]:
        """TASK_KILLED for every KillTask in ``effects`` still known to the book; the effects of all of them."""
        more: list[fx.Effect] = []
        for task_id in killed(effects):
            if self.core.book.get(task_id) is not None:
                more += self.status(task_id, "TASK_KILLED")
        return more

    def instances(self, app_id: str = "/web") -> list[Instance]:
        return self.core.book.of_app(app_id)

    def alive(self, app_id: str = "/web") -> list[Instance]:
        return [i for i in self.instances(app_id) if not i.killing]

    def start(self, the_app: App, *, healthy: bool | None = None) -> list[str]:
        """Deploy a new app, launch all its tasks on one offer and run them; its task ids."""
        self.deploy(the_app)
        task_ids = launched(self.offers(offer(resources=BIG)))
        self.run(task_ids, healthy=healthy)
        assert len(self.core.deployments) == 0, "the start did not finish"
        return task_ids
