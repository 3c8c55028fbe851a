"""Marathon-side health: which tasks are probed, their results per check, and the events a verdict makes.

Pure. HTTP, HTTPS and TCP checks run in Marathon itself (the shell's probes); COMMAND and MESOS_* checks run
on the agent and arrive in status updates. A new book (after a restart or a failover) probes nothing: the
first TASK_RUNNING a task reports, by reconciliation or otherwise, starts its probes again.
"""

from __future__ import annotations

from typing import final

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.model import HealthResult, Instance, RootGroup
from butte.wire.marathon import App, HealthCheck, health_check_json

MARATHON_SIDE = frozenset({"HTTP", "HTTPS", "TCP"})


def marathon_side_checks(app: App) -> tuple[HealthCheck, ...]:
    """The health checks Marathon runs itself (the others run on the agent)."""
    return tuple(check for check in app.health_checks if check.protocol in MARATHON_SIDE)


@final
class HealthBook:
    def __init__(self) -> None:
        self._results: dict[str, dict[int, HealthResult]] = {}
        self._watched: set[str] = set()

    def watch(self, instance: Instance, app: App) -> list[fx.Effect]:
        """Start the probes of a running instance unless they run already."""
        checks = marathon_side_checks(app)
        if not checks or instance.task_id in self._watched:
            return []
        self._watched.add(instance.task_id)
        return [fx.WatchHealth(instance, checks)]

    def record(self, task_id: str, check_index: int, result: HealthResult) -> HealthResult:
        """Keep one check's result; returns the instance's health (alive only if every check is)."""
        results = self._results.setdefault(task_id, {})
        results[check_index] = result
        alive = all(r.alive for r in results.values())
        return HealthResult(
            alive=alive,
            consecutive_failures=result.consecutive_failures,
            first_success=result.first_success,
            last_success=result.last_success,
            last_failure=result.last_failure,
            last_failure_cause=result.last_failure_cause,
        )

    def results(self, task_id: str) -> list[HealthResult] | None:
        """Every check's latest result, in check order; None if no probe reported."""
        results = self._results.get(task_id)
        return None if results is None else [results[i] for i in sorted(results)]

    def forget(self, task_id: str) -> None:
        self._results.pop(task_id, None)
        self._watched.discard(task_id)


def health_changed_event(app: App, instance: Instance, alive: bool) -> fx.Publish:
    fields = {"appId": app.id, "instanceId": instance.task_id, "taskId": instance.task_id}
    return fx.Publish("health_status_changed_event", {**fields, "version": instance.version, "alive": alive})


def instance_health_changed_event(instance: Instance, healthy: bool) -> fx.Publish:
    """Marathon 1.4+'s instance-level twin of ``health_status_changed_event``."""
    fields = {"instanceId": instance.task_id, "runSpecId": instance.app_id, "runSpecVersion": instance.version}
    return fx.Publish("instance_health_changed_event", {**fields, "healthy": healthy})


def unhealthy_kill_event(app: App, instance: Instance, result: HealthResult) -> fx.Publish:
    return fx.Publish(
        "unhealthy_instance_kill_event",
        {
            "appId": app.id,
            "taskId": instance.task_id,
            "instanceId": instance.task_id,
            "version": instance.version,
            "reason": result.last_failure_cause or "health check failed",
            "host": instance.host,
            "slaveId": instance.agent_id,
        },
    )


def failed_check_event(app: App, instance: Instance, check: HealthCheck) -> fx.Publish:
    """``failed_health_check_event``: one probe of a Marathon-side check failed."""
    fields = {"appId": app.id, "taskId": instance.task_id, "instanceId": instance.task_id}
    return fx.Publish("failed_health_check_event", {**fields, "healthCheck": health_check_json(check)})


def health_check_changes(original: RootGroup, target: RootGroup) -> list[fx.Publish]:
    """``add_health_check_event`` / ``remove_health_check_event`` for every check a change adds or drops."""
    events: list[fx.Publish] = []
    for app_id in sorted(set(original.apps) | set(target.apps)):
        before = original.apps.get(app_id)
        after = target.apps.get(app_id)
        old = before.health_checks if before is not None else []
        new = after.health_checks if after is not None else []
        for check in new:
            if check not in old:
                fields = {"appId": app_id, "healthCheck": health_check_json(check)}
                events.append(fx.Publish("add_health_check_event", {**fields, "version": target.version}))
        events += [
            fx.Publish("remove_health_check_event", {"appId": app_id, "healthCheck": health_check_json(check)})
            for check in old
            if check not in new
        ]
    return events
