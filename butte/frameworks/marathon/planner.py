"""Deployment plans: the ordered steps that take one root group to another (Marathon's ``DeploymentPlan``).

Pure: two root groups in, a :class:`DeploymentPlan` out. Each changed app gets one action:

- in the target only: ``StartApplication`` (Marathon starts it at 0 and scales it in the ordered steps; here the
  start action itself scales to ``instances``);
- in the original only: ``StopApplication``;
- configuration changed (anything but ``instances``, ``version``, ``versionInfo``), a new
  ``lastConfigChangeAt``, or asked to restart: ``RestartApplication``;
- only ``instances`` changed: ``ScaleApplication``.

Order follows Marathon's ``DeploymentPlan.apply``: stops of removed apps come first, then the rest in
dependency order, dependencies first. Marathon puts every stop into one step; we order stops too (dependants
first, on the original's graph), which never runs a dependant without its dependency. Apps fall into layers by
the longest chain of affected apps they depend on (Marathon's ``runSpecsGroupedByLongestPath``), so apps that
do not depend on one another through affected apps share a step; a chain through unchanged apps still orders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from butte.core.errors import ValidationError
from butte.frameworks.marathon.model import Action, ActionKind, DeploymentPlan, RootGroup, Step, app_config_version
from butte.frameworks.marathon.pathid import ancestors, canonical, is_under, parent
from butte.wire.marathon import App

DependencyGraph = Mapping[str, frozenset[str]]
"""Each app id to the ids of the apps it depends on (directly, through its own or its groups' dependencies)."""


def plan(
    original: RootGroup,
    target: RootGroup,
    *,
    deployment_id: str,
    version: str,
    restart: frozenset[str] = frozenset(),
) -> DeploymentPlan:
    """The steps that take ``original`` to ``target``; an empty diff gives no steps.

    Raises:
        ValidationError: the dependencies (of ``target``, or of ``original`` for removed apps) form a cycle
            (field ``dependencies``), or a relative dependency climbs above the root group (field ``id``).
    """
    kinds = app_actions(original, target, restart)
    stopping = {app_id: kind for app_id, kind in kinds.items() if kind == "StopApplication"}
    deploying = {app_id: kind for app_id, kind in kinds.items() if kind != "StopApplication"}
    # Stops go dependants first: reverse the dependency layers of the group the apps still live in.
    stop_steps = list(reversed(layered_steps(dependency_graph(original), stopping)))
    steps = stop_steps + layered_steps(dependency_graph(target), deploying)
    return DeploymentPlan(id=deployment_id, version=version, original=original, target=target, steps=tuple(steps))


def app_actions(original: RootGroup, target: RootGroup, restart: frozenset[str]) -> dict[str, ActionKind]:
    """The one action each affected app needs; unchanged apps are left out."""
    kinds: dict[str, ActionKind] = {}
    for app_id in original.apps.keys() - target.apps.keys():
        kinds[app_id] = "StopApplication"
    for app_id, app in target.apps.items():
        before = original.apps.get(app_id)
        if before is None:
            kinds[app_id] = "StartApplication"
        elif app_id in restart or needs_restart(before, app):
            kinds[app_id] = "RestartApplication"
        elif before.instances != app.instances:
            kinds[app_id] = "ScaleApplication"
    return kinds


def needs_restart(before: App, after: App) -> bool:
    """Whether the app's tasks must be replaced (Marathon's ``needsRestart``).

    True when anything but the instance count and the server-set versions differs, or when the version of the
    last configuration change moved (a restart, a rollback): tasks of another configuration version are old.
    """
    if app_config_version(before) != app_config_version(after):
        return True
    return _config_of(before) != _config_of(after)


def _config_of(app: App) -> App:
    return msgspec.structs.replace(app, instances=0, version=None, version_info=None)


def layered_steps(graph: DependencyGraph, kinds: Mapping[str, ActionKind]) -> list[Step]:
    """``kinds`` as steps, dependencies first: one step per layer, apps in a layer sorted by id.

    Raises:
        ValidationError: the graph has a cycle.
    """
    if not kinds:
        return []
    depths = affected_depths(graph, frozenset(kinds))
    layers: dict[int, list[str]] = {}
    for app_id in kinds:
        layers.setdefault(depths.get(app_id, 1), []).append(app_id)
    return [
        Step(actions=tuple(Action(kind=kinds[app_id], app_id=app_id) for app_id in sorted(layers[depth])))
        for depth in sorted(layers)
    ]


def affected_depths(graph: DependencyGraph, affected: frozenset[str]) -> dict[str, int]:
    """Each app's layer: how many affected apps lie on its longest dependency chain, itself included.

    Kahn's algorithm over the whole graph, so that any cycle is found even among unchanged apps (Marathon
    refuses a root group whose dependency graph is cyclic).

    Raises:
        ValidationError: the graph has a cycle.
    """
    waiting = {app_id: len(deps) for app_id, deps in graph.items()}
    dependants: dict[str, list[str]] = {}
    for app_id, deps in graph.items():
        for dep in deps:
            dependants.setdefault(dep, []).append(app_id)
    ready = sorted(app_id for app_id, count in waiting.items() if count == 0)
    depths: dict[str, int] = {}
    while ready:
        app_id = ready.pop()
        below = max((depths[dep] for dep in graph[app_id]), default=0)
        depths[app_id] = below + (1 if app_id in affected else 0)
        for dependant in dependants.get(app_id, ()):
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                ready.append(dependant)
    if len(depths) < len(graph):
        stuck = ", ".join(sorted(app_id for app_id in graph if app_id not in depths))
        raise ValidationError("dependencies", f"dependency cycle among {stuck}")
    return depths


def dependency_graph(root: RootGroup) -> dict[str, frozenset[str]]:
    """Each app's dependencies as app ids: its own plus those of every enclosing group.

    A dependency naming a group stands for every app below it; one naming nothing known is ignored (validation
    reports it). An app never depends on itself, even through a group that holds it. Relative ids resolve as
    Marathon canonises them: an app's against its group, a group's against the group itself.

    Raises:
        ValidationError: a relative dependency climbs above the root group.
    """
    resolve = _AppsNamed(root.apps)
    graph: dict[str, frozenset[str]] = {}
    for app_id, app in root.apps.items():
        named: set[str] = set()
        for dep in app.dependencies:
            named |= resolve(canonical(dep, parent(app_id)))
        for group_id in ancestors(app_id):
            meta = root.groups.get(group_id)
            for dep in meta.dependencies if meta is not None else ():
                named |= resolve(canonical(dep, group_id))
        named.discard(app_id)
        graph[app_id] = frozenset(named)
    return graph


class _AppsNamed:
    """The app ids a dependency names (an app, or every app under a group), cached per name."""

    def __init__(self, apps: Iterable[str]) -> None:
        self._apps = frozenset(apps)
        self._cache: dict[str, frozenset[str]] = {}

    def __call__(self, name: str) -> frozenset[str]:
        found = self._cache.get(name)
        if found is None:
            found = frozenset(app for app in self._apps if app == name or is_under(app, name))
            self._cache[name] = found
        return found
