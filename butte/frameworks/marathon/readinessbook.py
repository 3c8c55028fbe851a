"""Readiness checks: which instances are probed for readiness, and their latest results (A4, A6).

Pure. Marathon checks readiness only while a deployment step works on the app ("readiness checks gate only
deployments"): an instance is probed once it runs, until it is ready, and the results live as long as the
deployment does (they show in ``/v2/deployments`` ``currentActions`` and in AppInfo). A new book (after a
restart or a failover) probes nothing; the next progress of a running deployment starts its probes again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import final

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.model import Action, Instance, Step
from butte.wire.marathon import App, ReadinessCheck


@final
@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The answer a readiness probe got (Marathon's ``lastResponse``, kept with ``preserveLastResponse``)."""

    status: int
    content_type: str
    body: str


@final
@dataclass(frozen=True, slots=True)
class ReadinessResult:
    """One probe's verdict on one instance: Marathon's ``ReadinessCheckResult`` plus the app it belongs to."""

    name: str
    task_id: str
    app_id: str
    ready: bool
    last_response: HttpResponse | None = None


def readiness_port(app: App, check: ReadinessCheck, host_ports: Sequence[int]) -> int | None:
    """The host port of the port named ``portName`` (container port mappings first, as validation names them);
    None when no port has that name or the task has fewer ports."""
    container = app.container
    if container is not None and container.port_mappings:
        names = [mapping.name for mapping in container.port_mappings]
    elif container is not None and container.docker is not None and container.docker.port_mappings:
        names = [mapping.name for mapping in container.docker.port_mappings]
    else:
        names = [definition.name for definition in app.port_definitions]
    if check.port_name not in names:
        return None
    index = names.index(check.port_name)
    return host_ports[index] if index < len(host_ports) else None


def wants_probe(app: App, instance: Instance) -> bool:
    """Running, reachable, not being killed, and not yet ready (Marathon checks once the task has started)."""
    return (
        bool(app.readiness_checks)
        and instance.state == "TASK_RUNNING"
        and not instance.killing
        and instance.unreachable_since is None
        and instance.ready is not True
    )


@final
class ReadinessBook:
    """Watched instances (task id -> app id) and the latest result of each instance of a deployment."""

    def __init__(self) -> None:
        self._watched: dict[str, str] = {}
        self._results: dict[str, ReadinessResult] = {}

    def watch(self, app: App, instances: Sequence[Instance]) -> list[fx.Effect]:
        """Start probing the instances of ``app`` (in a deployment step) that run and are not ready yet."""
        effects: list[fx.Effect] = []
        for instance in instances:
            if instance.task_id in self._watched or not wants_probe(app, instance):
                continue
            check = app.readiness_checks[0]  # Marathon allows at most one.
            port = readiness_port(app, check, instance.ports)
            if port is None:
                continue  # validation names the port; a task launched without it can never be checked
            self._watched[instance.task_id] = app.id
            effects.append(fx.WatchReadiness(instance, check, port))
        return effects

    def watch_step(
        self, step: Step, app_for: Callable[[Action], App], instances_of: Callable[[str], Sequence[Instance]]
    ) -> list[fx.Effect]:
        """Start probing every instance a deployment step works on (not those a stop is ending)."""
        effects: list[fx.Effect] = []
        for action in step.actions:
            if action.kind != "StopApplication":
                effects += self.watch(app_for(action), instances_of(action.app_id))
        return effects

    def record(self, result: ReadinessResult) -> bool:
        """Keep a probe's result; False if the instance is not watched (its probe should stop). A ready
        instance is no longer watched: its probe stops by itself, as Marathon's stops on the first ready."""
        if result.task_id not in self._watched:
            return False
        self._results[result.task_id] = result
        if result.ready:
            del self._watched[result.task_id]
        return True

    def forget(self, task_id: str) -> list[fx.Effect]:
        """Drop an instance that ended or was expunged; stop its probe if one runs."""
        self._results.pop(task_id, None)
        return [fx.UnwatchReadiness(task_id)] if self._watched.pop(task_id, None) is not None else []

    def end_apps(self, app_ids: Collection[str]) -> list[fx.Effect]:
        """A deployment ended: stop the probes of its apps and drop their results."""
        wanted = set(app_ids)
        for task_id in [t for t, result in self._results.items() if result.app_id in wanted]:
            del self._results[task_id]
        stopped = [task_id for task_id, app_id in self._watched.items() if app_id in wanted]
        for task_id in stopped:
            del self._watched[task_id]
        return [fx.UnwatchReadiness(task_id) for task_id in stopped]

    def results(self, app_ids: Collection[str]) -> tuple[ReadinessResult, ...]:
        """The latest result of every instance of these apps, by task id."""
        wanted = set(app_ids)
        return tuple(r for _, r in sorted(self._results.items()) if r.app_id in wanted)

    def watched(self) -> frozenset[str]:
        return frozenset(self._watched)
