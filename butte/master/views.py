"""The master's legacy JSON views (``/master/state``, ``/master/state-summary``) in Mesos's v0 shapes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import butte
from butte.core.resources import Resources
from butte.master.model import Agent, AgentLink, Framework, FrameworkLink, Task
from butte.master.state import MasterState
from butte.wire.base import to_builtins
from butte.wire.resources import resources_to_wire

# The task states counted per agent and framework in /master/state-summary.
SUMMARY_STATES = (
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_FINISHED",
    "TASK_KILLED",
    "TASK_FAILED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_UNREACHABLE",
)

Json = dict[str, Any]


def version_json() -> Json:
    """``GET /version``; the version is numeric because pymesos parses it as a tuple of ints."""
    return {
        "version": butte.MESOS_COMPAT_VERSION,
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
        "butte_version": butte.__version__,
    }


def state_json(state: MasterState, *, flags: dict[str, str], elected_time: float, leader: bool = True) -> Json:
    """``GET /master/state``."""
    config = state.config
    pid = f"master@{config.ip}:{config.port}"
    agents = [a for a in state.agents.values() if a.registered]
    unreachable = sum(1 for a in state.agents.values() if a.link is AgentLink.UNREACHABLE)
    return {
        **version_json(),
        "start_time": state.start_time,
        "elected_time": elected_time,
        "id": config.master_id,
        "pid": pid,
        "hostname": config.hostname,
        "capabilities": ["AGENT_UPDATE"],
        "activated_slaves": float(sum(1 for a in agents if a.active)),
        "deactivated_slaves": float(sum(1 for a in agents if not a.active)),
        "unreachable_slaves": float(unreachable),
        "leader": pid if leader else "",
        "leader_info": to_builtins(state.master_info),
        "flags": flags,
        "slaves": [agent_json(state, a) for a in agents],
        "recovered_slaves": [],
        "frameworks": [framework_json(state, f) for f in state.frameworks.values()],
        "completed_frameworks": [framework_json(state, f) for f in state.completed_frameworks],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    }


def agent_used(agent: Agent) -> Resources:
    """Resources held by the agent's live tasks and executors."""
    return Resources.sum([t.resources for t in agent.tasks.values() if not t.resources_released]) + Resources.sum(
        [e.resources for e in agent.executors.values()]
    )


def agent_json(state: MasterState, agent: Agent) -> Json:
    """One entry of ``slaves``."""
    offered = Resources.sum([state.offers[o].resources for o in agent.offers])
    return {
        "id": agent.id,
        "hostname": agent.hostname,
        "port": agent.port,
        "pid": agent.pid,
        "attributes": _attributes_flat(agent),
        "registered_time": agent.registered_time,
        **({"reregistered_time": agent.reregistered_time} if agent.reregistered_time else {}),
        "resources": agent.total.to_flat(),
        "used_resources": agent_used(agent).to_flat(),
        "offered_resources": offered.to_flat(),
        "reserved_resources": {},
        "unreserved_resources": agent.total.unreserved().to_flat(),
        "resources_full": to_builtins(resources_to_wire(agent.total)),
        "active": agent.active,
        "deactivated": False,
        "version": agent.version or butte.MESOS_COMPAT_VERSION,
        "capabilities": [],
    }


def _attributes_flat(agent: Agent) -> Json:
    flat: Json = {}
    for attribute in agent.info.attributes:
        if attribute.scalar is not None:
            flat[attribute.name] = attribute.scalar.value
        elif attribute.text is not None:
            flat[attribute.name] = attribute.text.value
        elif attribute.ranges is not None:
            flat[attribute.name] = "[" + ", ".join(f"{r.begin}-{r.end}" for r in attribute.ranges.range) + "]"
        elif attribute.set is not None:
            flat[attribute.name] = "{" + ",".join(attribute.set.item) + "}"
    return flat


def framework_json(state: MasterState, framework: Framework) -> Json:
    """One entry of ``frameworks`` / ``completed_frameworks``."""
    info = framework.info
    used = Resources.sum([t.resources for t in framework.tasks.values() if not t.resources_released])
    used = used + Resources.sum([e.resources for e in framework.executors.values()])
    offered = Resources.sum([state.offers[o].resources for o in framework.offers if o in state.offers])
    roles = sorted(framework.roles)
    return {
        "id": framework.id,
        "name": info.name,
        "user": info.user,
        "hostname": info.hostname or "",
        "webui_url": info.webui_url or "",
        **({"principal": info.principal} if info.principal else {}),
        "capabilities": [c.type for c in info.capabilities if c.type],
        "active": framework.connected,
        "connected": framework.connected,
        "recovered": framework.link is FrameworkLink.RECOVERED,
        "failover_timeout": info.failover_timeout,
        "checkpoint": info.checkpoint,
        "registered_time": framework.registered_time,
        "unregistered_time": framework.unregistered_time or 0.0,
        **({"reregistered_time": framework.reregistered_time} if framework.reregistered_time else {}),
        **({"roles": roles} if framework.multi_role else {"role": roles[0] if roles else "*"}),
        "resources": (used + offered).to_flat(),
        "used_resources": used.to_flat(),
        "offered_resources": offered.to_flat(),
        "tasks": [task_json(t) for t in framework.tasks.values() if t.state != "TASK_UNREACHABLE"],
        "unreachable_tasks": [task_json(t) for t in framework.tasks.values() if t.state == "TASK_UNREACHABLE"],
        "completed_tasks": [task_json(t) for t in framework.completed_tasks],
        "offers": [_offer_json(state, o) for o in sorted(framework.offers) if o in state.offers],
        "executors": [],
        **({"labels": to_builtins(info.labels.labels)} if info.labels else {}),
    }


def _offer_json(state: MasterState, offer_id: str) -> Json:
    offer = state.offers[offer_id]
    return {
        "id": offer.id,
        "framework_id": offer.framework_id,
        "slave_id": offer.agent_id,
        "resources": offer.resources.to_flat(),
    }


def task_json(task: Task) -> Json:
    """One task entry, v0 naming (``slave_id``)."""
    info = task.info
    return {
        "id": task.id,
        "name": info.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id or "",
        "slave_id": task.agent_id,
        "state": task.state,
        "resources": task.resources.to_flat(),
        "role": task.role,
        "statuses": [_status_json(s) for s in task.statuses],
        **({"labels": to_builtins(info.labels.labels)} if info.labels else {}),
        **({"container": to_builtins(info.container)} if info.container else {}),
    }


def _status_json(status: Any) -> Json:
    entry: Json = {"state": status.state, "timestamp": status.timestamp or 0.0}
    if status.healthy is not None:
        entry["healthy"] = status.healthy
    if status.container_status is not None:
        entry["container_status"] = to_builtins(status.container_status)
    return entry


def state_summary_json(state: MasterState) -> Json:
    """``GET /master/state-summary``: agents and frameworks with task counts per state."""
    agents = []
    for agent in (a for a in state.agents.values() if a.registered):
        counts = Counter(t.state for t in agent.tasks.values())
        entry = {k: v for k, v in agent_json(state, agent).items() if not k.endswith("_full")}
        entry.update({s: counts.get(s, 0) for s in SUMMARY_STATES})
        entry["framework_ids"] = sorted({fid for fid, _ in agent.tasks})
        agents.append(entry)
    summaries = []
    for framework in state.frameworks.values():
        counts = Counter(t.state for t in framework.tasks.values())
        entry = {
            k: v
            for k, v in framework_json(state, framework).items()
            if k not in ("tasks", "completed_tasks", "offers", "executors", "unreachable_tasks")
        }
        entry.update({s: counts.get(s, 0) for s in SUMMARY_STATES})
        entry["slave_ids"] = sorted({t.agent_id for t in framework.tasks.values()})
        summaries.append(entry)
    return {"hostname": state.config.hostname, "slaves": agents, "frameworks": summaries}
