"""Agents the master lost: marked unreachable, coming back, or marked gone by the operator (pure).

Mesos (``Master::markUnreachable``, ``__removeSlave``, ``markGone``): an unreachable agent's offers are
rescinded and its resources leave the allocator; each of its tasks becomes TASK_UNREACHABLE with
``unreachable_time`` for PARTITION_AWARE frameworks and TASK_LOST for the others (reason
REASON_AGENT_REMOVED), and every framework hears that the agent was lost (a FAILURE event with only
``agent_id``). These master updates carry no uuid: they are not retried. The registry write comes first;
the shell does it before calling these handlers.

When the agent reregisters, what it reports is taken back; tasks of frameworks that were told TASK_LOST are
killed so that nothing runs twice under a task id the framework already gave up, and partition-aware
frameworks are told the task's state again and decide. An agent marked gone is told to shut down, its
tasks become TASK_GONE_BY_OPERATOR (REASON_AGENT_REMOVED_BY_OPERATOR), and it is never readmitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from butte.master import offers, tasks
from butte.master.effects import CloseAgentStream, Effect, SendToAgent, SendToFramework
from butte.master.model import Agent, AgentLink, Framework, Task
from butte.master.state import MasterState, id_of
from butte.wire import mesos
from butte.wire.agent_link import AgentEvent, ShutdownAgent
from butte.wire.mesos import TERMINAL_STATES
from butte.wire.resources import resources_from_wire
from butte.wire.scheduler import Event, Failure

GONE_MESSAGE = "Agent has been marked gone"


def pong_times(state: MasterState) -> dict[str, float]:
    """When each agent that can still be marked unreachable last spoke to us."""
    return {a.id: a.last_pong for a in state.agents.values() if a.registered}


def mark_unreachable(state: MasterState, agent_id: str, now: float) -> list[Effect]:
    """The agent missed its pings (already recorded in the registry): take it out and tell the frameworks."""
    agent = state.agents.get(agent_id)
    if agent is None or not agent.registered:
        return []
    effects = _take_out(state, agent, now)
    agent.link, agent.unreachable_time = AgentLink.UNREACHABLE, now
    message = f"Agent {agent.hostname} is unreachable"
    for task in _live_tasks(agent):
        status = _master_status(task, "TASK_UNREACHABLE", "REASON_AGENT_REMOVED", message, now)
        status.unreachable_time = mesos.TimeInfo(nanoseconds=int(now * 1e9))
        effects += _tell(state, task, status)
    return effects + _agent_lost(state, agent.id)


def shutdown_gone_agent(state: MasterState, agent_id: str) -> list[Effect]:
    """SHUTDOWN on the agent's stream, then end it; to be carried out before :func:`mark_gone`."""
    agent = state.agents.get(agent_id)
    if agent is None or agent.link is not AgentLink.CONNECTED:
        return []
    event = AgentEvent(type="SHUTDOWN", shutdown=ShutdownAgent(message=GONE_MESSAGE))
    return [SendToAgent(agent.id, event), CloseAgentStream(agent.id, agent.stream_id)]


def mark_gone(state: MasterState, agent_id: str, now: float) -> list[Effect]:
    """MARK_AGENT_GONE (already recorded in the registry): its tasks become TASK_GONE_BY_OPERATOR."""
    agent = state.agents.get(agent_id)
    if agent is None or agent.link is AgentLink.GONE:
        return []
    was_live = agent.registered
    effects = _take_out(state, agent, now)
    agent.link = AgentLink.GONE
    for task in list(agent.tasks.values()):
        if task.state not in TERMINAL_STATES:
            status = _master_status(
                task, "TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR", GONE_MESSAGE, now
            )
            effects += _tell(state, task, status)
        tasks.forget_task(state, task, task.state, now)
    return effects + (_agent_lost(state, agent.id) if was_live else [])


def recall_unreachable(state: MasterState, agent_id: str, info: mesos.AgentInfo, now: float) -> None:
    """Book an agent a previous leader marked unreachable (read from the registry), with no tasks known.

    Mesos's registry carries unreachable agents across failovers, so a new leader still answers
    reconciliation for them and treats their reregistration as a comeback. The registry keeps no marking
    time: the election time stands in for it.
    """
    info.id = id_of(agent_id)
    total = resources_from_wire(info.resources)
    agent = Agent(id=agent_id, info=info, ip=info.hostname, total=total, registered_time=now)
    agent.link, agent.unreachable_time = AgentLink.UNREACHABLE, now
    state.agents[agent_id] = agent


def mark_recovered_unreachable(state: MasterState, agent_id: str, info: mesos.AgentInfo, now: float) -> list[Effect]:
    """A recovered agent missed the reregistration window (already marked in the registry): frameworks hear
    that it was lost; its tasks are unknown here, so no task update is sent (Mesos does the same)."""
    if agent_id in state.agents:
        return []
    recall_unreachable(state, agent_id, info, now)
    return _agent_lost(state, agent_id)


@dataclass(frozen=True, slots=True)
class Comeback:
    """An unreachable agent reregistering: the tasks the master had booked on it."""

    agent_id: str
    tasks: tuple[Task, ...]


def forget_unreachable_agent(state: MasterState, agent: Agent) -> Comeback:
    """Drop the lost agent and its tasks from the books, so its reregistration rebuilds them from its report."""
    del state.agents[agent.id]
    for task in agent.tasks.values():
        framework = state.frameworks.get(task.framework_id)
        if framework is not None and framework.tasks.get(task.id) is task:
            del framework.tasks[task.id]
    return Comeback(agent_id=agent.id, tasks=tuple(agent.tasks.values()))


def forget_pruned(state: MasterState, agent_ids: Iterable[str]) -> list[str]:
    """Forget agents the registry GC just pruned, with their unreachable tasks; the ids forgotten.

    Mesos (``Master::_doRegistryGc``) erases them from its unreachable/gone books and drops their tasks from
    the frameworks' unreachable tasks without telling anyone: reconciliation then answers TASK_UNKNOWN. An
    agent that reregistered meanwhile is no longer lost here and is kept (``RegistryGcRace``).
    """
    forgotten: list[str] = []
    for agent_id in agent_ids:
        agent = state.agents.get(agent_id)
        if agent is not None and agent.link in (AgentLink.UNREACHABLE, AgentLink.GONE):
            forget_unreachable_agent(state, agent)
            forgotten.append(agent_id)
    return forgotten


def after_comeback(state: MasterState, comeback: Comeback, now: float) -> list[Effect]:
    """Once the agent's report is booked: kill what was declared lost, re-announce the rest.

    Tasks the agent reports that were not booked on it count as lost too: after a master failover the new
    leader knows an unreachable agent only from the registry, while the old leader may have told TASK_LOST.
    """
    effects: list[Effect] = []
    booked = {(t.framework_id, t.id) for t in comeback.tasks}
    agent = state.agents.get(comeback.agent_id)
    reported = [t for key, t in sorted(agent.tasks.items()) if key not in booked] if agent is not None else []
    for old in [*comeback.tasks, *reported]:
        framework = state.frameworks.get(old.framework_id)
        if framework is None or old.state in TERMINAL_STATES:
            continue
        task = framework.tasks.get(old.id)
        if task is None or task.agent_id != comeback.agent_id:
            effects += _gone_while_unreachable(framework, old, now)
        elif task.state in TERMINAL_STATES:
            continue  # the agent resends its own terminal update, reliably
        elif framework.partition_aware:
            message = "Agent reregistered"
            effects += tasks.master_update(
                framework, _master_status(task, task.state, "REASON_AGENT_REREGISTERED", message, now)
            )
        else:
            # The framework was told TASK_LOST and may have replaced the task: it must not run twice.
            task.killed_after_lost = True
            effects += tasks.kill(state, framework, task.id, None, now)
    return effects


def _gone_while_unreachable(framework: Framework, old: Task, now: float) -> list[Effect]:
    # The agent came back without the task: it ended while we could not hear (Mesos: TASK_GONE).
    status = _master_status(old, "TASK_GONE", "REASON_AGENT_REREGISTERED", "Task not found after reregistration", now)
    old.state, old.latest = status.state, status
    old.statuses.append(status)
    framework.completed_tasks.append(old)
    return tasks.master_update(framework, status)


def _take_out(state: MasterState, agent: Agent, now: float) -> list[Effect]:
    """Rescind the agent's offers and remove it from the allocator; its stream, if any, is ended."""
    effects = offers.rescind_agent_offers(state, agent, now)
    if agent.link is AgentLink.CONNECTED:
        effects.append(CloseAgentStream(agent.id, agent.stream_id))
    agent.stream_id = ""  # calls still arriving on the old stream are refused
    state.allocator.remove_agent(agent.id)
    for task in agent.tasks.values():
        task.resources_released = True  # the allocator forgot the agent with everything held on it
    for framework_id, executor_id in list(agent.executors):
        framework = state.frameworks.get(framework_id)
        if framework is not None:
            framework.executors.pop((agent.id, executor_id), None)
    agent.executors.clear()
    return effects


def _live_tasks(agent: Agent) -> list[Task]:
    return sorted((t for t in agent.tasks.values() if t.state not in TERMINAL_STATES), key=lambda t: t.id)


def _master_status(task: Task, state_name: str, reason: str, message: str, now: float) -> mesos.TaskStatus:
    return mesos.TaskStatus(
        task_id=task.info.task_id,
        state=state_name,  # type: ignore[arg-type]
        message=message,
        source="SOURCE_MASTER",
        reason=reason,
        agent_id=id_of(task.agent_id),
        executor_id=id_of(task.executor_id) if task.executor_id else None,
        timestamp=now,
    )


def _tell(state: MasterState, task: Task, status: mesos.TaskStatus) -> list[Effect]:
    """Book a master-made status on the task and send it to its framework (as that framework may see it)."""
    task.state, task.latest = status.state, status
    task.statuses.append(status)
    framework = state.frameworks.get(task.framework_id)
    return tasks.master_update(framework, status) if framework is not None else []


def _agent_lost(state: MasterState, agent_id: str) -> list[Effect]:
    # Mesos's slaveLost: a FAILURE event naming only the agent, to every connected framework.
    event = Event(type="FAILURE", failure=Failure(agent_id=id_of(agent_id)))
    return [SendToFramework(f.id, event) for f in state.frameworks.values() if f.connected]
