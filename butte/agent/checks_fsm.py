"""When to probe a task, when it is healthy, unhealthy or to be killed, and which updates that makes (pure).

Health checks follow Mesos's health checker: the first probe runs ``delay_s`` after the task started, each
next one ``interval_s`` after the previous one finished. Failures inside the grace period (counted from the
start) are ignored until the first success; afterwards each failure counts, and ``consecutive_failures`` of
them in a row kill the task. Health is reported on the first result and whenever it changes (Mesos's
command executor forwards a TASK_RUNNING with ``healthy`` and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED).
Checks (``TaskInfo.check``) only report: an update whenever the result differs from the last one.

The shell runs the probes and feeds results in with ``now``; the machines answer with effects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import final


@final
@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The timing of a health check (``mesos.v1.HealthCheck``), in seconds."""

    delay_s: float = 15.0
    interval_s: float = 10.0
    timeout_s: float = 20.0
    consecutive_failures: int = 3
    grace_period_s: float = 10.0


@final
@dataclass(frozen=True, slots=True)
class CheckPolicy:
    """The timing of a check (``mesos.v1.CheckInfo``), in seconds."""

    delay_s: float = 15.0
    interval_s: float = 10.0
    timeout_s: float = 20.0


# ---- events ----


@final
@dataclass(frozen=True, slots=True)
class ProbePassed:
    """A health probe succeeded."""


@final
@dataclass(frozen=True, slots=True)
class ProbeFailed:
    """A health probe failed (bad exit code or status, refused, timed out)."""

    message: str


@final
@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check probe found: an exit code, an HTTP status, TCP success; None when it could not tell."""

    value: int | bool | None


# ---- effects ----


@final
@dataclass(frozen=True, slots=True)
class ScheduleProbe:
    """Run the next probe at ``at``."""

    at: float


@final
@dataclass(frozen=True, slots=True)
class ReportHealth:
    """Send a TASK_RUNNING update carrying ``healthy``."""

    healthy: bool
    consecutive_failures: int


@final
@dataclass(frozen=True, slots=True)
class KillUnhealthy:
    """Kill the task: it failed too many health checks in a row."""

    message: str


@final
@dataclass(frozen=True, slots=True)
class ReportCheck:
    """Send a TASK_RUNNING update carrying this check result."""

    result: CheckResult


Effect = ScheduleProbe | ReportHealth | KillUnhealthy | ReportCheck


class Health(enum.Enum):
    """What is known of a task's health."""

    UNKNOWN = "unknown"  # no result counted yet (still starting, or failing inside the grace period)
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    KILLED = "killed"  # failed past the limit: no more probes


@final
@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """The health machine right now."""

    health: Health
    consecutive_failures: int
    probes: int


@final
class HealthMachine:
    """One task's health check, from its start until it is killed or ends."""

    def __init__(self, policy: HealthPolicy, started_at: float) -> None:
        self.policy = policy
        self._started_at = started_at
        self.health = Health.UNKNOWN
        self.consecutive_failures = 0
        self._probes = 0

    def start(self) -> list[Effect]:
        """The first probe, ``delay_s`` after the task started."""
        return [ScheduleProbe(self._started_at + self.policy.delay_s)]

    def handle(self, event: ProbePassed | ProbeFailed, now: float) -> list[Effect]:
        """Count one probe result; the updates it makes, and the next probe unless the task is to die."""
        if self.health is Health.KILLED:
            return []
        self._probes += 1
        effects = self._passed() if isinstance(event, ProbePassed) else self._failed(event.message, now)
        # Once the task is to be killed no probe follows (Mesos keeps probing, but nobody acts on it).
        if not any(isinstance(effect, KillUnhealthy) for effect in effects):
            effects.append(ScheduleProbe(now + self.policy.interval_s))
        return effects

    def snapshot(self) -> HealthSnapshot:
        """State, failure count and probes run."""
        return HealthSnapshot(self.health, self.consecutive_failures, self._probes)

    def _passed(self) -> list[Effect]:
        self.consecutive_failures = 0
        if self.health is Health.HEALTHY:
            return []
        self.health = Health.HEALTHY
        return [ReportHealth(healthy=True, consecutive_failures=0)]

    def _failed(self, message: str, now: float) -> list[Effect]:
        # Mesos ignores failures during the grace period only while the task has never been healthy.
        if self.health is Health.UNKNOWN and now - self._started_at <= self.policy.grace_period_s:
            return []
        self.consecutive_failures += 1
        effects: list[Effect] = []
        if self.health is not Health.UNHEALTHY:
            self.health = Health.UNHEALTHY
            effects.append(ReportHealth(healthy=False, consecutive_failures=self.consecutive_failures))
        if self.consecutive_failures >= self.policy.consecutive_failures:
            self.health = Health.KILLED
            effects.append(KillUnhealthy(self._kill_message(message)))
        return effects

    def _kill_message(self, last_failure: str) -> str:
        count = self.consecutive_failures
        plural = "" if count == 1 else "s"
        return f"Task killed: health check failed {count} time{plural} in a row ({last_failure})"


@final
class CheckMachine:
    """One task's check: probes on a schedule and reports each change of result."""

    def __init__(self, policy: CheckPolicy, started_at: float) -> None:
        self.policy = policy
        self._started_at = started_at
        self.last: CheckResult | None = None

    def start(self) -> list[Effect]:
        """The first probe, ``delay_s`` after the task started."""
        return [ScheduleProbe(self._started_at + self.policy.delay_s)]

    def handle(self, event: CheckResult, now: float) -> list[Effect]:
        """A probe's result: an update when it changed, then the next probe."""
        effects: list[Effect] = []
        if event != self.last:
            self.last = event
            effects.append(ReportCheck(event))
        effects.append(ScheduleProbe(now + self.policy.interval_s))
        return effects
