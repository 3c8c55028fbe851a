"""What Marathon's core asks its shell to do: Mesos calls, store writes, events, health and readiness probes.

The core returns these from every ``handle``-style method; the shell (:mod:`.service`) carries them out in
order. Store writes come before the calls that depend on them, so a crash never leaves a launched task that
the store does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup
from butte.wire.marathon import HealthCheck, ReadinessCheck
from butte.wire.mesos import TaskInfo


@final
@dataclass(frozen=True, slots=True)
class LaunchTasks:
    offer_id: str
    tasks: tuple[TaskInfo, ...]


@final
@dataclass(frozen=True, slots=True)
class DeclineOffers:
    offer_ids: tuple[str, ...]
    refuse_seconds: float


@final
@dataclass(frozen=True, slots=True)
class KillTask:
    task_id: str
    agent_id: str | None
    grace_period_s: float | None = None


@final
@dataclass(frozen=True, slots=True)
class Revive:
    """New launches are wanted: clear the offer filters our declines left at the master."""


@final
@dataclass(frozen=True, slots=True)
class Suppress:
    """Nothing to launch: stop receiving offers until the next Revive."""


@final
@dataclass(frozen=True, slots=True)
class ReconcileTasks:
    """Ask the master for the state of these tasks (``(task_id, agent_id)``); none means all (implicit)."""

    tasks: tuple[tuple[str, str | None], ...]


@final
@dataclass(frozen=True, slots=True)
class SaveInstances:
    instances: tuple[Instance, ...]


@final
@dataclass(frozen=True, slots=True)
class DeleteInstance:
    task_id: str


@final
@dataclass(frozen=True, slots=True)
class SaveRoot:
    root: RootGroup


@final
@dataclass(frozen=True, slots=True)
class SaveDeployment:
    plan: DeploymentPlan
    current_step: int


@final
@dataclass(frozen=True, slots=True)
class DeleteDeployment:
    deployment_id: str


@final
@dataclass(frozen=True, slots=True)
class Publish:
    """An event for ``/v2/events``; the shell adds ``eventType`` and ``timestamp``."""

    event_type: str
    fields: dict[str, Any]


@final
@dataclass(frozen=True, slots=True)
class WatchHealth:
    """Start Marathon-side probes (HTTP, HTTPS, TCP) of a running instance."""

    instance: Instance
    checks: tuple[HealthCheck, ...]


@final
@dataclass(frozen=True, slots=True)
class UnwatchHealth:
    task_id: str


@final
@dataclass(frozen=True, slots=True)
class WatchReadiness:
    """Probe a running instance's readiness check at host ``port`` until it is ready (deployments only)."""

    instance: Instance
    check: ReadinessCheck
    port: int


@final
@dataclass(frozen=True, slots=True)
class UnwatchReadiness:
    task_id: str


Effect = (
    LaunchTasks
    | DeclineOffers
    | KillTask
    | Revive
    | Suppress
    | ReconcileTasks
    | SaveInstances
    | DeleteInstance
    | SaveRoot
    | SaveDeployment
    | DeleteDeployment
    | Publish
    | WatchHealth
    | UnwatchHealth
    | WatchReadiness
    | UnwatchReadiness
)
