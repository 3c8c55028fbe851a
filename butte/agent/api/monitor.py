"""``GET /monitor/statistics`` and the agent's operator API (``POST /api/v1``): what each container uses.

The numbers are Mesos's ``ResourceStatistics`` (cpu times, memory, limits), read from the container's cgroups,
or from ``/proc`` under posix isolation. The operator API answers GET_HEALTH, GET_VERSION, GET_STATE (tasks,
executors, frameworks) and GET_CONTAINERS, in the shape of Mesos's agent v1 operator API (reference §4.4).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, final

from aiohttp import web

from butte import MESOS_COMPAT_VERSION
from butte.agent.state import AgentState
from butte.containerizer.isolators.base import Statistics
from butte.containerizer.isolators.containers import Containers
from butte.core.errors import ValidationError
from butte.edge import content_type_error, error_response
from butte.wire.base import to_builtins

Json = dict[str, Any]


@final
@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """One running executor's container and its statistics."""

    framework_id: str
    executor_id: str
    executor_name: str
    source: str
    container_id: str
    statistics: Statistics


class MonitorSource(Protocol):
    """Where the monitor reads containers from (the agent; tests give their own)."""

    async def container_usage(self) -> list[ContainerUsage]: ...

    def state_view(self) -> Json: ...


@final
class AgentMonitor:
    """Containers of the agent's live executors, with what their isolation measures."""

    def __init__(self, state: AgentState, containers: Containers, agent_id: Callable[[], str]) -> None:
        self._state = state
        self._containers = containers
        self._agent_id = agent_id

    async def container_usage(self) -> list[ContainerUsage]:
        """Every live executor whose container the isolation knows, with its statistics."""
        executors = [
            executor
            for framework in self._state.frameworks.values()
            for executor in framework.executors.values()
            if executor.container_id and not executor.exited
        ]
        statistics = await self._containers.statistics(executor.container_id for executor in executors)
        return [
            ContainerUsage(
                framework_id=executor.framework_id,
                executor_id=executor.executor_id,
                executor_name=executor.info.name or "",
                source=executor.info.source or "",
                container_id=executor.container_id,
                statistics=statistics[executor.container_id],
            )
            for executor in executors
            if executor.container_id in statistics
        ]

    def state_view(self) -> Json:
        """GET_STATE's tasks, executors and frameworks (the lite version: no completed frameworks)."""
        agent_id = self._agent_id()
        frameworks = list(self._state.frameworks.values())
        executors = [executor for framework in frameworks for executor in framework.executors.values()]
        tasks = [task for executor in executors for task in executor.tasks.values()]
        return {
            "get_tasks": {"launched_tasks": [to_builtins(task.to_wire(agent_id)) for task in tasks]},
            "get_executors": {"executors": [{"executor_info": to_builtins(e.info)} for e in executors]},
            "get_frameworks": {"frameworks": [{"framework_info": to_builtins(f.info)} for f in frameworks]},
        }


def usage_document(usage: ContainerUsage) -> Json:
    """One entry of ``/monitor/statistics``."""
    return {
        "framework_id": usage.framework_id,
        "executor_id": usage.executor_id,
        "executor_name": usage.executor_name,
        "source": usage.source,
        "statistics": usage.statistics,
    }


def container_document(usage: ContainerUsage) -> Json:
    """One entry of GET_CONTAINERS."""
    return {
        "framework_id": {"value": usage.framework_id},
        "executor_id": {"value": usage.executor_id},
        "executor_name": usage.executor_name,
        "container_id": {"value": usage.container_id},
        "resource_statistics": usage.statistics,
    }


def add_monitor_routes(app: web.Application, source: MonitorSource) -> None:
    """Mount ``/monitor/statistics`` (and ``.json``, and under ``/slave(1)``) and ``POST /api/v1``."""

    async def statistics(_: web.Request) -> web.Response:
        return web.json_response([usage_document(usage) for usage in await source.container_usage()])

    async def operator(request: web.Request) -> web.Response:
        refused = content_type_error(request.content_type if "Content-Type" in request.headers else None)
        if refused is not None:
            return refused
        try:
            call_type = _call_type(await request.read())
            answer = await _answer(call_type, source)
        except ValidationError as exc:
            return error_response(exc, prefix="Failed to validate agent::Call: ")
        return web.json_response({"type": call_type, call_type.lower(): answer})

    for prefix in ("", "/slave(1)"):
        app.router.add_get(f"{prefix}/monitor/statistics", statistics)
        app.router.add_get(f"{prefix}/monitor/statistics.json", statistics)
    app.router.add_post("/api/v1", operator)


def _call_type(body: bytes) -> str:
    try:
        call = json.loads(body)
    except ValueError as exc:
        raise ValidationError("body", f"not JSON: {exc}") from exc
    call_type = call.get("type") if isinstance(call, dict) else None
    if not isinstance(call_type, str):
        raise ValidationError("type", "Expecting 'type' to be present")
    if call_type not in _CALLS:
        raise ValidationError("type", f"'{call_type}' is not a call this agent answers")
    return call_type


async def _health(_: MonitorSource) -> Json:
    return {"healthy": True}


async def _version(_: MonitorSource) -> Json:
    return {"version_info": {"version": MESOS_COMPAT_VERSION, "build_date": "", "build_user": ""}}


async def _state(source: MonitorSource) -> Json:
    return source.state_view()


async def _containers(source: MonitorSource) -> Json:
    return {"containers": [container_document(usage) for usage in await source.container_usage()]}


_CALLS: dict[str, Callable[[MonitorSource], Awaitable[Json]]] = {
    "GET_HEALTH": _health,
    "GET_VERSION": _version,
    "GET_STATE": _state,
    "GET_CONTAINERS": _containers,
}


async def _answer(call_type: str, source: MonitorSource) -> Json:
    return await _CALLS[call_type](source)
