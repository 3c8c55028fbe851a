"""Marathon's book of instances: what each task of each app is doing, from Mesos status updates.

Pure. An instance is created when its task is launched (``TASK_STAGING``), changes with every status update,
and leaves the book when its task reaches a terminal state. Partition awareness as Marathon 1.4+:
``TASK_UNREACHABLE`` keeps the instance (with ``unreachable_since``) until the app's unreachable strategy
says otherwise, and a later ``TASK_RUNNING`` makes it reachable again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import final

from butte.frameworks.marathon.model import HealthResult, Instance, iso_timestamp
from butte.wire.marathon import LastTaskFailure

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)

# Marathon counts every terminal state but TASK_KILLED as a failure for launch backoff, TASK_FINISHED too:
# a service that exits is a service that failed (docs/backoff.md).
BACKOFF_STATES = TERMINAL_STATES - {"TASK_KILLED"}

# What ``lastTaskFailure`` records: the states that mean the task did not end as asked.
FAILURE_STATES = TERMINAL_STATES - {"TASK_KILLED", "TASK_FINISHED"}

_CONDITIONS = {
    "TASK_STAGING": "Staging",
    "TASK_STARTING": "Starting",
    "TASK_RUNNING": "Running",
    "TASK_KILLING": "Killing",
    "TASK_FINISHED": "Finished",
    "TASK_FAILED": "Failed",
    "TASK_KILLED": "Killed",
    "TASK_ERROR": "Error",
    "TASK_LOST": "Gone",
    "TASK_DROPPED": "Dropped",
    "TASK_GONE": "Gone",
    "TASK_GONE_BY_OPERATOR": "Gone",
    "TASK_UNREACHABLE": "Unreachable",
    "TASK_UNKNOWN": "Unknown",
}


def condition(state: str) -> str:
    """Marathon's instance condition for a Mesos task state (``instance_changed_event``)."""
    return _CONDITIONS.get(state, "Unknown")


@final
@dataclass(frozen=True, slots=True)
class StatusChange:
    """What one status update did to the book: the instance before and after (None once it left)."""

    before: Instance
    after: Instance | None
    state: str

    @property
    def ended(self) -> bool:
        return self.after is None

    @property
    def counts_as_failure(self) -> bool:
        """A failure for launch backoff: it ended on its own, not because Marathon killed it."""
        return self.after is None and not self.before.killing and self.state in BACKOFF_STATES


def with_status(instance: Instance, state: str, *, healthy: bool | None, message: str | None, now: float) -> Instance:
    """The instance after a non-terminal status update."""
    changed = replace(instance, state=state, message=message or instance.message)
    if state == "TASK_UNREACHABLE":
        since = instance.unreachable_since if instance.unreachable_since is not None else now
        changed = replace(changed, unreachable_since=since)
    elif instance.unreachable_since is not None:
        changed = replace(changed, unreachable_since=None)
    if state == "TASK_RUNNING" and instance.started_at is None:
        changed = replace(changed, started_at=now)
    if healthy is not None:
        changed = replace(changed, health=next_health(instance.health, healthy, now))
    return changed


def next_health(previous: HealthResult | None, alive: bool, now: float) -> HealthResult:
    """Fold one health verdict reported by Mesos into the instance's health result."""
    prior = previous or HealthResult(alive=alive)
    if alive:
        first = prior.first_success if prior.first_success is not None else now
        return replace(prior, alive=True, consecutive_failures=0, first_success=first, last_success=now)
    return replace(
        prior,
        alive=False,
        consecutive_failures=prior.consecutive_failures + 1,
        last_failure=now,
        last_failure_cause="health check failed",
    )


def failure_record(instance: Instance, state: str, message: str | None, now: float) -> LastTaskFailure:
    """The app's ``lastTaskFailure`` for an instance that ended in ``state``."""
    return LastTaskFailure(
        app_id=instance.app_id,
        host=instance.host,
        message=message or "",
        state=state,
        task_id=instance.task_id,
        timestamp=iso_timestamp(now),
        version=instance.version,
        slave_id=instance.agent_id,
    )


@final
class InstanceBook:
    """Every known instance, by task id and by app."""

    def __init__(self, instances: Iterable[Instance] = ()) -> None:
        self._by_id: dict[str, Instance] = {}
        self._by_app: dict[str, dict[str, Instance]] = {}
        for instance in instances:
            self.put(instance)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Instance]:
        return iter(list(self._by_id.values()))

    def get(self, task_id: str) -> Instance | None:
        return self._by_id.get(task_id)

    def of_app(self, app_id: str) -> list[Instance]:
        return list(self._by_app.get(app_id, {}).values())

    def app_ids(self) -> list[str]:
        return [app_id for app_id, instances in self._by_app.items() if instances]

    def put(self, instance: Instance) -> None:
        self._by_id[instance.task_id] = instance
        self._by_app.setdefault(instance.app_id, {})[instance.task_id] = instance

    def remove(self, task_id: str) -> Instance | None:
        instance = self._by_id.pop(task_id, None)
        if instance is not None:
            of_app = self._by_app.get(instance.app_id, {})
            of_app.pop(task_id, None)
            if not of_app:
                self._by_app.pop(instance.app_id, None)
        return instance

    def apply_status(
        self, task_id: str, state: str, *, healthy: bool | None, message: str | None, now: float
    ) -> StatusChange | None:
        """Apply a status update; None for a task this book does not know."""
        instance = self._by_id.get(task_id)
        if instance is None:
            return None
        if state in TERMINAL_STATES:
            self.remove(task_id)
            return StatusChange(before=instance, after=None, state=state)
        after = with_status(instance, state, healthy=healthy, message=message, now=now)
        self.put(after)
        return StatusChange(before=instance, after=after, state=state)
