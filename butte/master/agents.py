"""Agents: admission, reregistration with their tasks, disconnection (pure)."""

from __future__ import annotations

from collections import defaultdict

from butte.core.resources import Resources
from butte.master import offers, unreachable
from butte.master.effects import Allocate, CloseAgentStream, Effect, SendToAgent
from butte.master.model import (
    Agent,
    AgentLink,
    Framework,
    FrameworkLink,
    RunningExecutor,
    Task,
    framework_roles,
)
from butte.master.state import MasterState, id_of
from butte.master.tasks import forget_task, master_update
from butte.wire import mesos
from butte.wire.agent_link import AgentEvent, FrameworkRef, Registered, Reregister
from butte.wire.mesos import TERMINAL_STATES
from butte.wire.resources import resources_from_wire


def registered_event(state: MasterState, agent_id: str, kind: str = "REGISTERED") -> AgentEvent:
    """REGISTERED (or REREGISTERED) with what the agent needs to talk to this master."""
    registered = Registered(
        agent_id=id_of(agent_id),
        master_info=state.master_info,
        ping_interval_seconds=state.config.agent_ping_timeout_s,
    )
    return AgentEvent(type=kind, registered=registered)  # type: ignore[arg-type]


def admit(
    state: MasterState, agent_id: str, info: mesos.AgentInfo, ip: str, stream_id: str, now: float
) -> list[Effect]:
    """A new agent (already written to the registry): give its resources to the allocator."""
    info.id = id_of(agent_id)
    total = resources_from_wire(info.resources)
    agent = Agent(id=agent_id, info=info, ip=ip, total=total, registered_time=now, stream_id=stream_id, last_pong=now)
    state.agents[agent_id] = agent
    state.allocator.add_agent(agent_id, total, {}, now)
    return [SendToAgent(agent_id, registered_event(state, agent_id)), Allocate()]


def readmit(state: MasterState, call: Reregister, ip: str, stream_id: str, now: float) -> list[Effect]:
    """An agent comes back with its tasks: after a broken link, or to a restarted or new master."""
    info = call.agent_info
    assert info.id is not None
    agent = state.agents.get(info.id.value)
    if agent is not None and agent.link is AgentLink.UNREACHABLE:
        comeback = unreachable.forget_unreachable_agent(state, agent)
        return [*_recover(state, call, ip, stream_id, now), *unreachable.after_comeback(state, comeback, now)]
    if agent is not None:
        return _reconnect(state, agent, call, ip, stream_id, now)
    return _recover(state, call, ip, stream_id, now)


def _reconnect(state: MasterState, agent: Agent, call: Reregister, ip: str, stream_id: str, now: float) -> list[Effect]:
    effects: list[Effect] = []
    if agent.link is AgentLink.CONNECTED and agent.stream_id != stream_id:
        effects.append(CloseAgentStream(agent.id, agent.stream_id))
    agent.link, agent.stream_id, agent.ip = AgentLink.CONNECTED, stream_id, ip
    agent.reregistered_time, agent.last_pong = now, now
    reported = {(t.framework_id.value, t.task_id.value) for t in call.tasks}
    for key, task in list(agent.tasks.items()):
        if key not in reported and task.state not in TERMINAL_STATES:
            effects += _task_missing_on_agent(state, task, now)
    state.allocator.activate_agent(agent.id)
    effects += _shutdown_removed_frameworks(state, agent.id, call)
    effects.append(SendToAgent(agent.id, registered_event(state, agent.id, "REREGISTERED")))
    return [*effects, Allocate()]


def _task_missing_on_agent(state: MasterState, task: Task, now: float) -> list[Effect]:
    # The RUN_TASK was lost with the old link: the task never started, so nothing can run twice.
    framework = state.frameworks.get(task.framework_id)
    forget_task(state, task, "TASK_DROPPED" if framework and framework.partition_aware else "TASK_LOST", now)
    if framework is None:
        return []
    status = mesos.TaskStatus(
        task_id=task.info.task_id,
        state="TASK_DROPPED",
        message="Task was not found on the agent when it reregistered",
        reason="REASON_AGENT_REREGISTERED",
        source="SOURCE_MASTER",
        agent_id=id_of(task.agent_id),
        timestamp=now,
    )
    return master_update(framework, status)


def _recover(state: MasterState, call: Reregister, ip: str, stream_id: str, now: float) -> list[Effect]:
    info = call.agent_info
    assert info.id is not None
    total = resources_from_wire(info.resources)
    agent = Agent(
        id=info.id.value,
        info=info,
        ip=ip,
        total=total,
        registered_time=now,
        reregistered_time=now,
        stream_id=stream_id,
        last_pong=now,
        version=call.version,
    )
    state.agents[agent.id] = agent
    infos = {f.id.value: f for f in call.frameworks if f.id is not None}
    used: dict[tuple[str, str], Resources] = defaultdict(Resources.empty)
    for record in call.executors:
        _recover_executor(state, agent, infos, record.executor_info, used, now)
    for wire_task in call.tasks:
        _recover_task(state, agent, infos, wire_task, used, now)
    state.allocator.add_agent(agent.id, total, dict(used), now)
    effects = _shutdown_removed_frameworks(state, agent.id, call)
    effects.append(SendToAgent(agent.id, registered_event(state, agent.id, "REREGISTERED")))
    return [*effects, Allocate()]


def _recovered_framework(
    state: MasterState, framework_id: str, infos: dict[str, mesos.FrameworkInfo], now: float
) -> Framework | None:
    framework = state.frameworks.get(framework_id)
    if framework is not None or framework_id in state.removed_framework_ids:
        return framework
    info = infos.get(framework_id) or mesos.FrameworkInfo(user="", name="", id=id_of(framework_id))
    framework = Framework(id=framework_id, info=info, registered_time=now, link=FrameworkLink.RECOVERED)
    state.frameworks[framework_id] = framework
    state.allocator.add_framework(framework_id, framework.roles, frozenset(), now, active=False)
    return framework


def _role_of(framework: Framework, resources: list[mesos.Resource]) -> str:
    for resource in resources:
        if resource.allocation_info is not None and resource.allocation_info.role:
            return resource.allocation_info.role
    return min(framework_roles(framework.info) or {"*"})


def _recover_executor(
    state: MasterState,
    agent: Agent,
    infos: dict[str, mesos.FrameworkInfo],
    executor: mesos.ExecutorInfo,
    used: dict[tuple[str, str], Resources],
    now: float,
) -> None:
    if executor.framework_id is None:
        return
    framework = _recovered_framework(state, executor.framework_id.value, infos, now)
    if framework is None:
        return
    role = _role_of(framework, executor.resources)
    running = RunningExecutor(info=executor, role=role, resources=resources_from_wire(executor.resources))
    framework.executors[(agent.id, executor.executor_id.value)] = running
    agent.executors[(framework.id, executor.executor_id.value)] = running
    used[(framework.id, role)] = used[(framework.id, role)] + running.resources


def _recover_task(
    state: MasterState,
    agent: Agent,
    infos: dict[str, mesos.FrameworkInfo],
    wire_task: mesos.Task,
    used: dict[tuple[str, str], Resources],
    now: float,
) -> None:
    framework = _recovered_framework(state, wire_task.framework_id.value, infos, now)
    if framework is None:
        return
    role = _role_of(framework, wire_task.resources)
    info = mesos.TaskInfo(
        name=wire_task.name,
        task_id=wire_task.task_id,
        agent_id=id_of(agent.id),
        resources=wire_task.resources,
        labels=wire_task.labels,
        discovery=wire_task.discovery,
        container=wire_task.container,
        health_check=wire_task.health_check,
        kill_policy=wire_task.kill_policy,
    )
    task = Task(
        info=info,
        framework_id=framework.id,
        agent_id=agent.id,
        role=role,
        resources=resources_from_wire(wire_task.resources),
        executor_id=wire_task.executor_id.value if wire_task.executor_id else None,
        state=wire_task.state,
        statuses=list(wire_task.statuses),
        latest=wire_task.statuses[-1] if wire_task.statuses else None,
        unacked_state=wire_task.status_update_state,
        unacked_uuid=wire_task.status_update_uuid,
    )
    framework.tasks[task.id] = task
    agent.tasks[(framework.id, task.id)] = task
    if task.state in TERMINAL_STATES:
        task.resources_released = True
    else:
        used[(framework.id, role)] = used[(framework.id, role)] + task.resources


def _shutdown_removed_frameworks(state: MasterState, agent_id: str, call: Reregister) -> list[Effect]:
    # Tasks of a framework the master already removed must not keep running (Mesos shuts them down).
    framework_ids = {t.framework_id.value for t in call.tasks} | {
        e.executor_info.framework_id.value for e in call.executors if e.executor_info.framework_id is not None
    }
    removed = sorted(framework_ids & state.removed_framework_ids)
    return [
        SendToAgent(
            agent_id,
            AgentEvent(type="SHUTDOWN_FRAMEWORK", shutdown_framework=FrameworkRef(framework_id=id_of(f))),
        )
        for f in removed
    ]


def disconnect(state: MasterState, agent_id: str, stream_id: str, now: float) -> list[Effect]:
    """The agent's link broke: no offers on it until it reregisters; its tasks keep running."""
    agent = state.agents.get(agent_id)
    if agent is None or agent.stream_id != stream_id or agent.link is not AgentLink.CONNECTED:
        return []
    agent.link = AgentLink.DISCONNECTED
    state.allocator.deactivate_agent(agent_id)
    return offers.rescind_agent_offers(state, agent, now)
