"""The port between Marathon's REST API and the running framework.

The HTTP handlers (:mod:`butte.frameworks.marathon.api`) read state and ask for changes only through
:class:`MarathonControl`; :class:`butte.frameworks.marathon.service.MarathonService` implements it. Reads are
synchronous snapshots; changes are async because they are persisted before they are answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final

from butte.core.errors import Conflict
from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup
from butte.frameworks.marathon.readinessbook import ReadinessResult
from butte.wire.marathon import App, LastTaskFailure


class LockedByDeployments(Conflict):
    """A change touches apps that running deployments hold; answered 409 with the deployments' ids."""

    def __init__(self, deployment_ids: Sequence[str]) -> None:
        first = deployment_ids[0] if deployment_ids else ""
        super().__init__(
            "App is locked by one or more deployments. Override with the option '?force=true'. "
            f"View details at '/v2/deployments/{first}'."
        )
        self.deployment_ids = tuple(deployment_ids)


@final
@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A running deployment: its plan, how far it got (``current_step`` is 1-based, as Marathon's) and the
    readiness results of the instances its steps probe."""

    plan: DeploymentPlan
    current_step: int
    readiness: tuple[ReadinessResult, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class UnusedOffer:
    """An offer a queued app could not use, and why (``reasons`` are Marathon's NoOfferMatchReason names)."""

    offer_id: str
    agent_id: str
    hostname: str
    reasons: tuple[str, ...]
    timestamp: float


@final
@dataclass(frozen=True, slots=True)
class QueueEntry:
    """An app waiting for offers: how many tasks, its launch delay, and why offers did not fit."""

    app: App
    count: int
    delay_left_s: float
    since: float
    processed_offers: int
    unused_offers: int
    rejection_counts: tuple[tuple[str, int], ...]
    last_unused_offers: tuple[UnusedOffer, ...]


@final
@dataclass(frozen=True, slots=True)
class KillResult:
    """What a kill request did: either the instances it killed, or (with ``scale``) a deployment."""

    killed: tuple[Instance, ...]
    deployment: DeploymentPlan | None = None


class MarathonControl(Protocol):
    """Everything the REST API needs from the framework. Errors are :mod:`butte.core.errors` types."""

    # --- reads -------------------------------------------------------------------------------------------
    def root(self) -> RootGroup:
        """The current desired state (what the newest deployment aims at)."""
        ...

    def instances(self, app_id: str | None = None) -> Sequence[Instance]:
        """Known instances, of one app or all, launched or not yet reported."""
        ...

    async def app_versions(self, app_id: str) -> Sequence[str]:
        """Stored versions of an app, newest first. Raises NotFound for an unknown app."""
        ...

    async def app_version(self, app_id: str, version: str) -> App:
        """One stored version of an app. Raises NotFound."""
        ...

    async def group_versions(self, group_id: str) -> Sequence[str]:
        """Versions of the root group in which ``group_id`` existed, newest first. Raises NotFound."""
        ...

    async def root_version(self, version: str) -> RootGroup:
        """The root group as it was at ``version``. Raises NotFound."""
        ...

    def deployments(self) -> Sequence[DeploymentStatus]:
        """Deployments still running, oldest first."""
        ...

    def queue(self) -> Sequence[QueueEntry]:
        """Apps waiting to launch tasks."""
        ...

    def last_task_failure(self, app_id: str) -> LastTaskFailure | None: ...

    def framework_id(self) -> str | None: ...

    def leader(self) -> str | None:
        """``host:port`` of the leading instance, None when there is none."""
        ...

    def is_leader(self) -> bool: ...

    def now(self) -> float:
        """The shell's clock, so that handlers stamp versions consistently."""
        ...

    # --- changes -----------------------------------------------------------------------------------------
    async def deploy(self, target: RootGroup, *, force: bool, restart: frozenset[str] = frozenset()) -> DeploymentPlan:
        """Start a deployment from the current root to ``target`` (apps in ``restart`` are rolled even if
        unchanged). ``target`` already carries the new versions.

        Raises:
            Conflict: an app it touches is locked by a running deployment and ``force`` is false
                (``LockedByDeployments`` names them).
            ValidationError: the target is inconsistent (e.g. a dependency cycle).
        """
        ...

    async def kill(self, task_ids: Sequence[str], *, scale: bool, wipe: bool, force: bool) -> KillResult:
        """Kill instances; with ``scale`` lower their apps' ``instances`` by as many (a deployment).

        Raises:
            NotFound: an id is not a known instance.
            Conflict: ``scale`` and an app is locked and not ``force``.
        """
        ...

    async def cancel_deployment(self, deployment_id: str, *, force: bool) -> DeploymentPlan | None:
        """Without force roll back (a new deployment, returned); with force stop it where it is (None).

        Raises:
            NotFound: no such running deployment.
        """
        ...

    async def reset_delay(self, app_id: str) -> None:
        """Forget the app's launch backoff. Raises NotFound if the app is not queued."""
        ...

    async def abdicate(self) -> None:
        """Give up leadership (``DELETE /v2/leader``)."""
        ...

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on, each a JSON object with ``eventType`` and ``timestamp``.

        A consumer slower than the bus loses events rather than stalling Marathon, as Marathon does.
        """
        ...

    def publish(self, event_type: str, fields: dict[str, Any]) -> None:
        """Put an event on the bus (the API publishes ``api_post_event``); ``timestamp`` is added."""
        ...

    def info(self) -> dict[str, Any]:
        """The ``marathon_config`` / ``zookeeper_config`` / ``http_config`` parts of ``/v2/info``."""
        ...
