"""Marathon's core data: the root group, instances and deployments, as plain frozen values.

Pure: no I/O, no clock. Times are POSIX seconds passed in by the shell; they become Marathon's ISO 8601
timestamps only at the edge (:func:`iso_timestamp`). An app's ``version`` is such a timestamp, assigned when a
deployment is created; it doubles as the id of the stored app version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, final

from butte.wire.marathon import App

ROOT = "/"

ActionKind = Literal["StartApplication", "StopApplication", "ScaleApplication", "RestartApplication"]


def iso_timestamp(t: float) -> str:
    """Marathon's timestamp: UTC, milliseconds, ``Z`` (the only forms the Python client parses)."""
    moment = dt.datetime.fromtimestamp(round(t, 3), tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """POSIX seconds of an ISO 8601 timestamp (``Z`` or an offset).

    Raises:
        ValueError: not an ISO 8601 timestamp.
    """
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@final
@dataclass(frozen=True, slots=True)
class GroupMeta:
    """What a group holds besides its apps: its dependencies and the version it last changed at."""

    version: str
    dependencies: tuple[str, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class RootGroup:
    """The whole desired state: every app by absolute id, every group by absolute id (``/`` included).

    A group exists when it is listed in ``groups``; the parents of every app and group are always listed.
    Apps carry their ``version`` and ``versionInfo``.
    """

    apps: Mapping[str, App] = field(default_factory=dict)
    groups: Mapping[str, GroupMeta] = field(default_factory=lambda: {ROOT: GroupMeta(version="")})
    version: str = ""


@final
@dataclass(frozen=True, slots=True)
class HealthResult:
    """One health check's view of an instance, as ``healthCheckResults`` shows it (times in POSIX seconds)."""

    alive: bool
    consecutive_failures: int = 0
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str | None = None


@final
@dataclass(frozen=True, slots=True)
class Instance:
    """One task of an app, as Marathon tracks it. ``task_id`` is also the instance id.

    ``config_version`` is the app's ``lastConfigChangeAt`` when the task was launched: a rolling restart
    replaces every instance whose config_version is older than the app's.
    """

    task_id: str
    app_id: str
    version: str
    config_version: str
    agent_id: str
    host: str
    staged_at: float
    ports: tuple[int, ...] = ()
    state: str = "TASK_STAGING"
    started_at: float | None = None
    health: HealthResult | None = None
    ready: bool | None = None
    unreachable_since: float | None = None
    killing: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None

    @property
    def healthy(self) -> bool | None:
        """None without health information, else whether the last result was alive."""
        return None if self.health is None else self.health.alive


def app_config_version(app: App) -> str:
    """The version of the app's last configuration change (its ``versionInfo.lastConfigChangeAt``)."""
    if app.version_info is not None:
        return app.version_info.last_config_change_at
    return app.version or ""


@final
@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    app_id: str


@final
@dataclass(frozen=True, slots=True)
class Step:
    """Actions that run concurrently; a step ends before the next one starts."""

    actions: tuple[Action, ...]


@final
@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """The steps that take ``original`` to ``target``, in dependency order."""

    id: str
    version: str
    original: RootGroup
    target: RootGroup
    steps: tuple[Step, ...]

    @property
    def affected_apps(self) -> tuple[str, ...]:
        return tuple(sorted({action.app_id for step in self.steps for action in step.actions}))
