"""The agent's ``/state`` document, in the shape of Mesos's agent ``/state`` (reference §4.5)."""

from __future__ import annotations

from typing import Any

from butte import MESOS_COMPAT_VERSION
from butte.agent.config import AgentConfig
from butte.agent.state import AgentState, ExecutorState, FrameworkState, TaskRecord
from butte.core.errors import ValidationError
from butte.wire.base import to_builtins
from butte.wire.mesos import AgentInfo
from butte.wire.resources import Resource, resources_from_wire

JsonObject = dict[str, Any]


def render_state(
    config: AgentConfig, state: AgentState, agent_info: AgentInfo, start_time: float, master: str | None
) -> JsonObject:
    """The whole ``/state`` document."""
    resources = config.resources.to_flat()
    return {
        "version": MESOS_COMPAT_VERSION,
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
        "start_time": start_time,
        "id": agent_info.id.value if agent_info.id else "",
        "pid": f"slave(1)@{config.ip}:{agent_info.port}",
        "hostname": agent_info.hostname,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT", "TASK_GROUPS"],
        "resources": resources,
        "reserved_resources": {},
        "unreserved_resources": resources,
        "reserved_resources_full": {},
        "unreserved_resources_full": to_builtins(agent_info.resources),
        "attributes": config.attributes.to_flat(),
        "master_hostname": master.rsplit(":", 1)[0] if master else "",
        "flags": dict(config.flags),
        "frameworks": [render_framework(framework) for framework in state.frameworks.values()],
        "completed_frameworks": [render_framework(framework) for framework in state.completed_frameworks],
    }


def render_framework(framework: FrameworkState) -> JsonObject:
    """One framework with its executors."""
    info = framework.info
    return {
        "id": framework.framework_id,
        "name": info.name,
        "user": info.user,
        "failover_timeout": info.failover_timeout,
        "checkpoint": info.checkpoint,
        "hostname": info.hostname or "",
        "role": info.role or (info.roles[0] if info.roles else "*"),
        "roles": list(info.roles),
        "principal": info.principal,
        "capabilities": [capability.type for capability in info.capabilities if capability.type],
        "executors": [render_executor(executor) for executor in framework.executors.values()],
        "completed_executors": [render_executor(executor) for executor in framework.completed_executors],
    }


def render_executor(executor: ExecutorState) -> JsonObject:
    """One executor with its live and completed tasks."""
    info = executor.info
    live = list(executor.tasks.values())
    return {
        "id": executor.executor_id,
        "name": info.name or "",
        "source": info.source or "",
        "container": executor.container_id,
        "directory": executor.directory,
        "type": info.type or ("CUSTOM" if info.command is not None else "DEFAULT"),
        "resources": flat_resources(info.resources + [r for task in live for r in task.info.resources]),
        "role": "*",
        "tasks": [render_task(task) for task in live if task.state != "TASK_STAGING"],
        "queued_tasks": [render_task(task) for task in live if task.state == "TASK_STAGING"],
        "completed_tasks": [render_task(task) for task in executor.completed_tasks],
    }


def render_task(task: TaskRecord) -> JsonObject:
    """One task with its status history."""
    info = task.info
    rendered: JsonObject = {
        "id": task.task_id,
        "name": info.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id,
        "slave_id": info.agent_id.value,
        "state": task.state,
        "resources": flat_resources(info.resources),
        "role": "*",
        "statuses": [
            {
                "state": status.state,
                "timestamp": status.timestamp,
                **({"container_status": to_builtins(status.container_status)} if status.container_status else {}),
            }
            for status in task.statuses
        ],
    }
    if task.user:
        rendered["user"] = task.user
    if info.labels is not None:
        rendered["labels"] = to_builtins(info.labels)["labels"]
    return rendered


def flat_resources(resources: list[Resource]) -> dict[str, float | str]:
    """Resources as Mesos's flat map, with cpus/gpus/mem/disk always present."""
    try:
        flat = resources_from_wire(resources).to_flat()
    except ValidationError:
        flat = {}
    return {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0, **flat}
