"""Tasks after launch: status updates, acknowledgements, kills, reconciliation, executor exits (pure)."""

from __future__ import annotations

import msgspec

from butte.master.effects import Effect, SendToAgent, SendToFramework
from butte.master.model import AgentLink, Framework, FrameworkLink, Task
from butte.master.state import MasterState, id_of
from butte.wire import mesos
from butte.wire.agent_link import (
    AcknowledgeUpdate,
    AgentEvent,
    ExecutorRef,
    FrameworkMessage,
    KillTask,
)
from butte.wire.base import ID
from butte.wire.mesos import PARTITION_AWARE_ONLY_STATES, TERMINAL_STATES
from butte.wire.scheduler import Event, Failure, MessageEvent, Update

# Mesos keeps a bounded history of statuses per task in /state.
_MAX_STATUSES_PER_TASK = 32


def as_seen_by(framework: Framework, status: mesos.TaskStatus) -> mesos.TaskStatus:
    """The status as this framework may see it: states new in Mesos 1.1 become TASK_LOST unless PARTITION_AWARE."""
    if framework.partition_aware or status.state not in PARTITION_AWARE_ONLY_STATES:
        return status
    return msgspec.structs.replace(status, state="TASK_LOST")


def master_update(framework: Framework, status: mesos.TaskStatus) -> list[Effect]:
    """An update the master makes itself (no uuid, so the framework must not acknowledge it)."""
    event = Event(type="UPDATE", update=Update(status=as_seen_by(framework, status)))
    return [SendToFramework(framework.id, event)]


def on_agent_update(
    state: MasterState, agent_id: str, framework_id: str, status: mesos.TaskStatus, now: float
) -> list[Effect]:
    """An agent forwarded a status update: record it, free resources if terminal, pass it on."""
    status.agent_id = id_of(agent_id)
    framework = state.frameworks.get(framework_id)
    task = framework.tasks.get(status.task_id.value) if framework else None
    effects: list[Effect] = []
    if task is not None and task.agent_id == agent_id:
        if task.killed_after_lost and status.state not in TERMINAL_STATES and framework is not None:
            # A late update (the agent retries one the framework had not acknowledged when the agent was cut
            # off) must not tell a framework that was told TASK_LOST the task runs again: acknowledge it on
            # the framework's behalf, so that the agent goes on to the kill's terminal update.
            return [] if status.uuid is None else [_ack_to_agent(framework, agent_id, status.task_id, status.uuid)]
        _record_status(state, task, status, now)
    if framework is not None and framework.link is FrameworkLink.CONNECTED:
        event = Event(type="UPDATE", update=Update(status=as_seen_by(framework, status)))
        effects.append(SendToFramework(framework.id, event))
    return effects


def _ack_to_agent(framework: Framework, agent_id: str, task_id: ID, uuid: str) -> Effect:
    ack = AcknowledgeUpdate(framework_id=id_of(framework.id), task_id=task_id, uuid=uuid)
    return SendToAgent(agent_id, AgentEvent(type="ACKNOWLEDGE_UPDATE", acknowledge_update=ack))


def _record_status(state: MasterState, task: Task, status: mesos.TaskStatus, now: float) -> None:
    # Mesos: once a task is terminal no later update changes its state (its resources are already free).
    if task.state not in TERMINAL_STATES:
        task.latest = status
        task.state = status.state
    # A retried update replaces the status it repeats, as Mesos's updateTask does.
    if task.statuses and task.statuses[-1].state == status.state:
        task.statuses.pop()
    task.statuses.append(status)
    if len(task.statuses) > _MAX_STATUSES_PER_TASK:
        del task.statuses[0]
    if status.uuid is not None:
        task.unacked_state, task.unacked_uuid = status.state, status.uuid
    if status.state in TERMINAL_STATES:
        release_task_resources(state, task, now)


def release_task_resources(state: MasterState, task: Task, now: float) -> None:
    """Give a finished task's resources back to the allocator, once (Mesos does it on the terminal update).

    They wait for the next batch allocation, as in Mesos (see docs/decisions.md).
    """
    if task.resources_released:
        return
    task.resources_released = True
    if task.agent_id in state.agents and not task.resources.is_empty():
        state.allocator.recover(task.framework_id, task.role, task.agent_id, task.resources, now)


def acknowledge(
    state: MasterState, framework: Framework, agent_id: str, task_id: str, uuid: str, now: float
) -> list[Effect]:
    """ACKNOWLEDGE: relay to the agent; a task whose terminal update is acknowledged is forgotten."""
    task = framework.tasks.get(task_id)
    if task is not None and task.unacked_uuid == uuid:
        task.unacked_state, task.unacked_uuid = None, None
        if task.state in TERMINAL_STATES:
            forget_task(state, task, task.state, now)
    if agent_id not in state.agents:
        return []
    return [_ack_to_agent(framework, agent_id, ID(value=task_id), uuid)]


def forget_task(state: MasterState, task: Task, final_state: str, now: float) -> None:
    """Move a task to its framework's completed list and free whatever it still holds."""
    release_task_resources(state, task, now)
    task.state = final_state
    framework = state.frameworks.get(task.framework_id)
    if framework is not None:
        framework.tasks.pop(task.id, None)
        framework.completed_tasks.append(task)
    agent = state.agents.get(task.agent_id)
    if agent is not None:
        agent.tasks.pop((task.framework_id, task.id), None)


def forget_executor(state: MasterState, framework: Framework, agent_id: str, executor_id: str) -> None:
    """Drop an executor from the books and give its own resources back."""
    running = framework.executors.pop((agent_id, executor_id), None)
    agent = state.agents.get(agent_id)
    if agent is not None:
        agent.executors.pop((framework.id, executor_id), None)
    if running is not None and agent is not None and not running.resources.is_empty():
        state.allocator.recover(framework.id, running.role, agent_id, running.resources, 0.0)


def kill(
    state: MasterState,
    framework: Framework,
    task_id: str,
    kill_policy: mesos.KillPolicy | None,
    now: float,
    agent_id: str | None = None,
) -> list[Effect]:
    """KILL: ask the task's agent; a task the master does not know is answered like reconciliation."""
    task = framework.tasks.get(task_id)
    if task is None:
        # Mesos reconciles with the agent id the KILL named, so a registered agent makes the task TASK_GONE.
        return reconcile(state, framework, [(task_id, agent_id)], now)
    kill_task = KillTask(framework_id=id_of(framework.id), task_id=task.info.task_id, kill_policy=kill_policy)
    return [SendToAgent(task.agent_id, AgentEvent(type="KILL_TASK", kill_task=kill_task))]


def reconcile(
    state: MasterState, framework: Framework, asked: list[tuple[str, str | None]], now: float
) -> list[Effect]:
    """RECONCILE: the latest state of the asked tasks, or of all the framework's tasks when none are named."""
    if not asked:
        return [e for task in framework.tasks.values() for e in master_update(framework, _latest(task, now))]
    effects: list[Effect] = []
    for task_id, agent_id in asked:
        task = framework.tasks.get(task_id)
        status = _latest(task, now) if task else _unknown_task_status(state, task_id, agent_id, now)
        effects += master_update(framework, status)
    return effects


def _latest(task: Task, now: float) -> mesos.TaskStatus:
    base = task.latest
    return mesos.TaskStatus(
        task_id=task.info.task_id,
        state=task.state,  # type: ignore[arg-type]
        message=base.message if base else None,
        source="SOURCE_MASTER",
        reason="REASON_RECONCILIATION",
        agent_id=id_of(task.agent_id),
        executor_id=id_of(task.executor_id) if task.executor_id else None,
        healthy=base.healthy if base else None,
        timestamp=now,
    )


def _unknown_task_status(state: MasterState, task_id: str, agent_id: str | None, now: float) -> mesos.TaskStatus:
    # Mesos: on a registered agent the task is gone; with no known agent the master cannot say (UNKNOWN).
    agent = state.agents.get(agent_id) if agent_id is not None else None
    if agent is not None and agent.link in _LOST_AGENT_ANSWERS:
        return _on_lost_agent_status(task_id, agent_id, _LOST_AGENT_ANSWERS[agent.link], now)
    known_agent = agent is not None
    return mesos.TaskStatus(
        task_id=ID(value=task_id),
        state="TASK_GONE" if known_agent else "TASK_UNKNOWN",
        # Mesos's texts: Marathon reads "Task is unknown to the" as "gone for good".
        message="Reconciliation: Task is unknown to the agent" if known_agent else "Reconciliation: Task is unknown",
        source="SOURCE_MASTER",
        reason="REASON_RECONCILIATION",
        agent_id=ID(value=agent_id) if agent_id else None,
        timestamp=now,
    )


# Mesos answers for tasks on an unreachable agent TASK_UNREACHABLE, on a gone one TASK_GONE_BY_OPERATOR.
_LOST_AGENT_ANSWERS = {AgentLink.UNREACHABLE: "TASK_UNREACHABLE", AgentLink.GONE: "TASK_GONE_BY_OPERATOR"}


def _on_lost_agent_status(task_id: str, agent_id: str | None, state_name: str, now: float) -> mesos.TaskStatus:
    return mesos.TaskStatus(
        task_id=ID(value=task_id),
        state=state_name,  # type: ignore[arg-type]
        message="Reconciliation: Task is on a lost agent",
        source="SOURCE_MASTER",
        reason="REASON_RECONCILIATION",
        agent_id=ID(value=agent_id) if agent_id else None,
        timestamp=now,
    )


def shutdown_executor(framework: Framework, agent_id: str, executor_id: str) -> list[Effect]:
    """SHUTDOWN: stop a custom executor on an agent."""
    ref = ExecutorRef(framework_id=id_of(framework.id), executor_id=ID(value=executor_id))
    return [SendToAgent(agent_id, AgentEvent(type="SHUTDOWN_EXECUTOR", shutdown_executor=ref))]


def framework_message(framework: Framework, agent_id: str, executor_id: str, data: str) -> list[Effect]:
    """MESSAGE from a scheduler to its executor, relayed through the agent."""
    message = FrameworkMessage(framework_id=id_of(framework.id), executor_id=ID(value=executor_id), data=data)
    return [SendToAgent(agent_id, AgentEvent(type="FRAMEWORK_MESSAGE", framework_message=message))]


def executor_message(state: MasterState, agent_id: str, framework_id: str, executor_id: str, data: str) -> list[Effect]:
    """An executor's message to its scheduler, relayed by the agent."""
    if framework_id not in state.frameworks:
        return []
    message = MessageEvent(agent_id=id_of(agent_id), executor_id=ID(value=executor_id), data=data)
    return [SendToFramework(framework_id, Event(type="MESSAGE", message=message))]


def executor_exited(
    state: MasterState, agent_id: str, framework_id: str, executor_id: str, status: int | None
) -> list[Effect]:
    """An executor ended: free its resources and tell its framework with a FAILURE event."""
    framework = state.frameworks.get(framework_id)
    if framework is None:
        return []
    forget_executor(state, framework, agent_id, executor_id)
    failure = Failure(agent_id=id_of(agent_id), executor_id=ID(value=executor_id), status=status)
    return [SendToFramework(framework_id, Event(type="FAILURE", failure=failure))]
