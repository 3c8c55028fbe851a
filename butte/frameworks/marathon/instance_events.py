"""Marathon's per-instance events from status updates: ``status_update_event`` and ``instance_changed_event``.

Pure. Marathon 1.4+ publishes both when a task's state changes: the first with the Mesos task state, the second
with the instance's *condition* (A3; :func:`.instances.condition`).
"""

from __future__ import annotations

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.instances import condition
from butte.frameworks.marathon.model import Instance


def status_events(before: Instance, instance: Instance, state: str, message: str | None) -> list[fx.Effect]:
    """The events of one status update: always the task's, and the instance's when its condition changed."""
    events: list[fx.Effect] = [status_update_event(instance, state, message)]
    if condition(before.state) != condition(state):
        events.append(instance_changed_event(instance, state))
    return events


def status_update_event(instance: Instance, state: str, message: str | None) -> fx.Publish:
    return fx.Publish(
        "status_update_event",
        {
            "slaveId": instance.agent_id,
            "taskId": instance.task_id,
            "taskStatus": state,
            "message": message or "",
            "appId": instance.app_id,
            "host": instance.host,
            "ports": list(instance.ports),
            "ipAddresses": [],
            "version": instance.version,
            "instanceId": instance.task_id,
        },
    )


def instance_changed_event(instance: Instance, state: str) -> fx.Publish:
    # Marathon 1.4+ publishes the instance's new condition next to the task's status update.
    fields = {"instanceId": instance.task_id, "condition": condition(state), "runSpecId": instance.app_id}
    return fx.Publish(
        "instance_changed_event",
        {**fields, "agentId": instance.agent_id, "host": instance.host, "runSpecVersion": instance.version},
    )
