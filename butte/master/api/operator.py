"""``POST /api/v1``: the master's v1 operator API (the read calls, weights and teardown).

Answers are ``{"type": "<CALL>", "<call>": {...}}`` as in ``mesos-v1-api.md`` §4.1 and §4.2. Mutating calls
answer 200 with an empty body, as Mesos's code does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

import butte
from butte.core.errors import ButteError, NotFound, ValidationError
from butte.core.resources import Resources
from butte.edge import accepts_json, content_type_error, empty, error_response
from butte.master import frameworks, unreachable, views
from butte.master.api.common import FLAGS, SERVICE
from butte.master.api.readonly import json_response
from butte.master.model import Agent, Framework, Task
from butte.master.service import MasterService
from butte.wire.base import decode, to_builtins
from butte.wire.operator import OperatorCall
from butte.wire.resources import resources_to_wire

log = logging.getLogger("butte.master.operator")

Json = dict[str, Any]


async def handle(request: web.Request) -> web.Response:
    """Entry point for every operator call."""
    service: MasterService = request.app[SERVICE]
    if not accepts_json(request.headers.get("Accept")):
        return web.Response(status=406, text="Expecting 'Accept' to allow application/json")
    if refused := content_type_error(request.headers.get("Content-Type")):
        return refused
    try:
        call = decode(await request.read(), OperatorCall)
        if call.type in _GETTERS:
            body = _GETTERS[call.type](service, request.app[FLAGS])
            return json_response(request, {"type": call.type, call.type.lower(): body})
        if call.type in _MUTATORS:
            _MUTATORS[call.type](service, call)
            return empty(200)
    except ButteError as exc:
        return error_response(exc, "Failed to validate master::Call: ")
    return web.Response(status=501, text=f"Operator call '{call.type}' is not implemented")


def _duration(seconds: float) -> Json:
    return {"nanoseconds": int(seconds * 1e9)}


def get_health(service: MasterService, flags: dict[str, str]) -> Json:
    return {"healthy": True}


def get_flags(service: MasterService, flags: dict[str, str]) -> Json:
    return {"flags": [{"name": k, "value": v} for k, v in sorted(flags.items())]}


def get_version(service: MasterService, flags: dict[str, str]) -> Json:
    return {"version_info": {"version": butte.MESOS_COMPAT_VERSION, "build_date": "", "build_user": ""}}


def get_master(service: MasterService, flags: dict[str, str]) -> Json:
    return {
        "master_info": to_builtins(service.state.master_info),
        "start_time": service.state.start_time,
        "elected_time": service.elected_time,
    }


def task_v1(task: Task) -> Json:
    """A task as ``mesos.v1.Task``."""
    entry: Json = {
        "name": task.info.name,
        "task_id": {"value": task.id},
        "framework_id": {"value": task.framework_id},
        "agent_id": {"value": task.agent_id},
        "state": task.state,
        "resources": to_builtins(resources_to_wire(task.resources)),
        "statuses": to_builtins(task.statuses),
    }
    if task.executor_id:
        entry["executor_id"] = {"value": task.executor_id}
    if task.unacked_state:
        entry["status_update_state"] = task.unacked_state
        entry["status_update_uuid"] = task.unacked_uuid
    return entry


def get_tasks(service: MasterService, flags: dict[str, str]) -> Json:
    every = list(service.state.frameworks.values())
    return {
        "tasks": [task_v1(t) for f in every for t in f.tasks.values()],
        "completed_tasks": [task_v1(t) for f in every for t in f.completed_tasks],
    }


def agent_v1(service: MasterService, agent: Agent) -> Json:
    """An agent as ``GetAgents.Agent``."""
    offered = Resources.sum([service.state.offers[o].resources for o in agent.offers])
    return {
        "agent_info": to_builtins(agent.info),
        "active": agent.active,
        "deactivated": False,
        "version": agent.version or butte.MESOS_COMPAT_VERSION,
        "pid": agent.pid,
        "registered_time": _duration(agent.registered_time),
        "total_resources": to_builtins(resources_to_wire(agent.total)),
        "allocated_resources": to_builtins(resources_to_wire(views.agent_used(agent))),
        "offered_resources": to_builtins(resources_to_wire(offered)),
    }


def get_agents(service: MasterService, flags: dict[str, str]) -> Json:
    return {"agents": [agent_v1(service, a) for a in service.state.agents.values() if a.registered]}


def framework_v1(framework: Framework) -> Json:
    """A framework as ``GetFrameworks.Framework``."""
    return {
        "framework_info": to_builtins(framework.info),
        "active": framework.connected,
        "connected": framework.connected,
        "recovered": framework.link.value == "recovered",
        "registered_time": _duration(framework.registered_time),
    }


def get_frameworks(service: MasterService, flags: dict[str, str]) -> Json:
    return {
        "frameworks": [framework_v1(f) for f in service.state.frameworks.values()],
        "completed_frameworks": [framework_v1(f) for f in service.state.completed_frameworks],
    }


def get_executors(service: MasterService, flags: dict[str, str]) -> Json:
    executors = [
        {"executor_info": to_builtins(e.info), "agent_id": {"value": agent_id}}
        for f in service.state.frameworks.values()
        for (agent_id, _), e in f.executors.items()
    ]
    return {"executors": executors}


def get_state(service: MasterService, flags: dict[str, str]) -> Json:
    return {
        "get_tasks": get_tasks(service, flags),
        "get_executors": get_executors(service, flags),
        "get_frameworks": get_frameworks(service, flags),
        "get_agents": get_agents(service, flags),
    }


def get_weights(service: MasterService, flags: dict[str, str]) -> Json:
    return {"weight_infos": [{"role": r, "weight": w} for r, w in sorted(service.state.weights.items())]}


def get_roles(service: MasterService, flags: dict[str, str]) -> Json:
    roles: dict[str, list[str]] = {}
    for framework in service.state.frameworks.values():
        for role in framework.roles:
            roles.setdefault(role, []).append(framework.id)
    names = sorted(set(roles) | set(service.state.weights))
    return {
        "roles": [
            {
                "name": r,
                "weight": service.state.weights.get(r, 1.0),
                "frameworks": [{"value": f} for f in roles.get(r, [])],
            }
            for r in names
        ]
    }


def update_weights(service: MasterService, call: OperatorCall) -> None:
    """UPDATE_WEIGHTS: stored in the registry first, then given to the allocator.

    Raises:
        ValidationError: a weight is not positive or a role is empty.
    """
    if call.update_weights is None:
        raise ValidationError("update_weights", "Expecting 'update_weights' to be present")
    new = {}
    for index, info in enumerate(call.update_weights.weight_infos):
        if not info.role or not info.weight > 0:
            raise ValidationError(f"update_weights.weight_infos[{index}]", "needs a role and a positive weight")
        new[info.role] = info.weight
    weights = {**service.state.weights, **new}
    service.registry.save_weights(weights)
    service.state.weights = weights
    service.state.allocator.update_weights(weights)
    service.request_allocation()


def teardown(service: MasterService, call: OperatorCall) -> None:
    """TEARDOWN: remove a framework and kill its tasks.

    Raises:
        ValidationError: no ``teardown.framework_id``.
        NotFound: the framework is not known.
    """
    if call.teardown is None:
        raise ValidationError("teardown", "Expecting 'teardown' to be present")
    framework = service.state.frameworks.get(call.teardown.framework_id.value)
    if framework is None:
        raise NotFound("Framework cannot be found")
    log.info("operator tore down framework %s", framework.id)
    service.apply(frameworks.teardown(service.state, framework, service.now()))


def mark_agent_gone(service: MasterService, call: OperatorCall) -> None:
    """MARK_AGENT_GONE: recorded in the registry first; the agent is told to shut down, its tasks are gone.

    Raises:
        ValidationError: no ``mark_agent_gone.agent_id``.
        NotFound: the agent is not known.
    """
    if call.mark_agent_gone is None:
        raise ValidationError("mark_agent_gone", "Expecting 'mark_agent_gone' to be present")
    agent_id = call.mark_agent_gone.agent_id.value
    if agent_id not in service.state.agents:
        raise NotFound(f"Agent '{agent_id}' not found")
    service.registry.mark(agent_id, "gone")
    log.info("operator marked agent %s gone", agent_id)
    service.apply(unreachable.shutdown_gone_agent(service.state, agent_id))
    service.apply(unreachable.mark_gone(service.state, agent_id, service.now()))


_GETTERS: dict[str, Callable[[MasterService, dict[str, str]], Json]] = {
    "GET_HEALTH": get_health,
    "GET_FLAGS": get_flags,
    "GET_VERSION": get_version,
    "GET_MASTER": get_master,
    "GET_STATE": get_state,
    "GET_AGENTS": get_agents,
    "GET_FRAMEWORKS": get_frameworks,
    "GET_EXECUTORS": get_executors,
    "GET_TASKS": get_tasks,
    "GET_ROLES": get_roles,
    "GET_WEIGHTS": get_weights,
}

_MUTATORS: dict[str, Callable[[MasterService, OperatorCall], None]] = {
    "UPDATE_WEIGHTS": update_weights,
    "TEARDOWN": teardown,
    "MARK_AGENT_GONE": mark_agent_gone,
}
