"""What to do next for one app: how many tasks to launch and which to kill, in a deployment or at rest.

Pure and stateless: the caller passes every instance it knows of the app (terminal ones already removed, kills it
asked for marked ``killing``) and applies the :class:`Moves` it gets back, then asks again after every change.
Asking twice with the same inputs after applying the first answer never launches or kills more: every count is
taken from the instances themselves, launches appear as new ``TASK_STAGING`` instances and killed ones stop
counting as soon as they are marked.

Rolling restarts follow Marathon's ``TaskReplaceActor``: keep at least ``minHealthy`` ready instances, never run
more than ``maxCapacity``, kill old instances as new ones become ready. Scaling down follows Marathon's
``ScalingProposition``: unreachable, then staging, then starting, then running, ``killSelection`` within each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import final

from butte.frameworks.marathon.model import ActionKind, Instance, app_config_version
from butte.wire.marathon import App
from butte.wire.mesos import TERMINAL_STATES

# Scale-down classes, killed in this order (Marathon's ScalingProposition); everything else is "running".
_KILL_CLASS = {"TASK_STAGING": 1, "TASK_STARTING": 2}


@final
@dataclass(frozen=True)
class Moves:
    """Launch ``launch`` new tasks of the app's current version, kill ``kill``; ``done`` ends the action."""

    launch: int
    kill: tuple[str, ...]
    done: bool


def is_alive(instance: Instance) -> bool:
    """Neither being killed nor ended: it counts towards the app's instances."""
    return not instance.killing and instance.state != "TASK_KILLING" and instance.state not in TERMINAL_STATES


def is_ready(app: App, instance: Instance) -> bool:
    """Running, healthy if the app has health checks, ready if it has readiness checks.

    An instance of an older configuration that never had a readiness verdict (the check is new with this
    version) is judged by its health alone, as Marathon judges old instances: else adding a readiness check
    would let a restart kill every old instance at once, below ``minimumHealthCapacity``.
    """
    if not is_alive(instance) or instance.state != "TASK_RUNNING":
        return False
    healthy = not app.health_checks or instance.healthy is True
    unjudged_old = instance.ready is None and instance.config_version != app_config_version(app)
    return healthy and (not app.readiness_checks or instance.ready is True or unjudged_old)


def kill_order(app: App, instances: Sequence[Instance]) -> list[Instance]:
    """``instances`` in the order a scale-down kills them: unreachable, staging, starting, running.

    Within one class ``killSelection`` decides: YOUNGEST_FIRST (latest ``staged_at``) or OLDEST_FIRST.
    """
    sign = -1.0 if app.kill_selection == "YOUNGEST_FIRST" else 1.0

    def key(instance: Instance) -> tuple[int, float, str]:
        rank = 0 if instance.unreachable_since is not None else _KILL_CLASS.get(instance.state, 3)
        return rank, sign * instance.staged_at, instance.task_id

    return sorted(instances, key=key)


def next_moves(action: ActionKind, app: App, instances: Sequence[Instance]) -> Moves:
    """The next moves of ``action`` on ``app``, given all its current instances.

    An action is done only once the instances it killed are gone, as Marathon's kill futures complete only on
    a terminal status.

    Raises:
        ValueError: ``action`` is not an action kind.
    """
    if action == "StopApplication":
        return stop_moves(instances)
    if action in ("StartApplication", "ScaleApplication"):
        return scale_moves(app, instances)
    if action == "RestartApplication":
        return replace_moves(app, instances)
    raise ValueError(f"unknown deployment action {action!r}")


def stop_moves(instances: Sequence[Instance]) -> Moves:
    """Kill every alive instance; done when none is left at all."""
    kill = tuple(sorted(instance.task_id for instance in instances if is_alive(instance)))
    return Moves(launch=0, kill=kill, done=not instances)


def scale_moves(app: App, instances: Sequence[Instance]) -> Moves:
    """Launch the missing or kill the surplus; done when exactly ``instances`` are alive and all ready."""
    alive = [instance for instance in instances if is_alive(instance)]
    surplus = len(alive) - app.instances
    if surplus > 0:
        kill = tuple(instance.task_id for instance in kill_order(app, alive)[:surplus])
        return Moves(launch=0, kill=kill, done=False)
    settled = len(alive) == len(instances) and all(is_ready(app, instance) for instance in alive)
    return Moves(launch=-surplus, kill=(), done=surplus == 0 and settled)


def maintain(app: App, instances: Sequence[Instance], *, inactive: frozenset[str]) -> Moves:
    """Outside deployments: replace what is missing (an UnreachableInactive instance counts as missing), and
    kill the surplus when an unreachable instance came back after its replacement started (``killSelection``).
    """
    counted = [instance for instance in instances if is_alive(instance) and instance.task_id not in inactive]
    surplus = len(counted) - app.instances
    kill = tuple(instance.task_id for instance in kill_order(app, counted)[: max(surplus, 0)])
    return Moves(launch=max(-surplus, 0), kill=kill, done=True)


@final
@dataclass(frozen=True)
class RestartBounds:
    """Marathon's ``computeRestartStrategy``: the floor of ready instances and the ceiling of alive ones."""

    min_healthy: int
    max_capacity: int


def restart_bounds(app: App, *, old_alive: bool) -> RestartBounds:
    """``ceil(instances * minimumHealthCapacity)`` and ``floor(instances * (1 + maximumOverCapacity))``.

    When the two are equal and old instances remain, Marathon allows one more so that the restart can move.
    The products are rounded to 9 places first so that 10 * 0.7 is 7, not 8.
    """
    strategy = app.upgrade_strategy
    min_healthy = math.ceil(round(app.instances * strategy.minimum_health_capacity, 9))
    max_capacity = math.floor(round(app.instances * (1 + strategy.maximum_over_capacity), 9))
    if min_healthy == max_capacity and old_alive:
        max_capacity += 1
    return RestartBounds(min_healthy=min_healthy, max_capacity=max_capacity)


def replace_moves(app: App, instances: Sequence[Instance]) -> Moves:
    """One round of a rolling restart: kill what keeps ``minHealthy`` ready, launch up to ``maxCapacity``.

    Done when every instance left is new, alive and ready, and there are exactly ``instances`` of them.
    """
    version = app_config_version(app)
    old = [i for i in instances if is_alive(i) and i.config_version != version]
    new = [i for i in instances if is_alive(i) and i.config_version == version]
    bounds = restart_bounds(app, old_alive=bool(old))
    ready_count = sum(1 for instance in old + new if is_ready(app, instance))
    new_kills, ready_count = _pick_kills(app, new, len(new) - app.instances, ready_count, 0)
    # Old instances may all go if that keeps minHealthy ready; unready ones go first, costing nothing.
    old_kills, ready_count = _pick_kills(app, old, len(old), ready_count, bounds.min_healthy)
    new_after = len(new) - len(new_kills)
    # An instance being killed holds its resources until Mesos says it ended: it counts against maxCapacity
    # until then, as Marathon's TaskReplaceActor counts old instances until their terminal status.
    launch = max(0, min(app.instances - new_after, bounds.max_capacity - len(instances)))
    done = len(instances) == app.instances and len(new) == len(instances)
    done = done and all(is_ready(app, instance) for instance in new)
    return Moves(launch=launch, kill=tuple(i.task_id for i in old_kills + new_kills), done=done)


def _pick_kills(
    app: App, candidates: Sequence[Instance], most: int, ready_count: int, min_ready: int
) -> tuple[list[Instance], int]:
    """Up to ``most`` of ``candidates`` (unready first, then scale-down order) whose kill keeps ``min_ready``
    ready instances; returns them and the ready count after them."""
    ordered = sorted(kill_order(app, candidates), key=lambda instance: is_ready(app, instance))
    picked: list[Instance] = []
    for instance in ordered[: max(most, 0)]:
        if is_ready(app, instance):
            if ready_count - 1 < min_ready:
                break
            ready_count -= 1
        picked.append(instance)
    return picked, ready_count
