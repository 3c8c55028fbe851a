"""What the agent does with each event on its master stream (DESIGN.md §7)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import final

from butte.agent.builtin import BuiltinExecutors
from butte.agent.context import AgentContext
from butte.agent.executors import CustomExecutors
from butte.agent.state import ExecutorKind, ExecutorState, FrameworkState, TaskRecord
from butte.agent.status_updates import UpdateAcknowledged
from butte.agent.updates import UpdateChannel
from butte.wire.agent_link import (
    AcknowledgeUpdate,
    AgentCall,
    AgentEvent,
    ExecutorRef,
    KillTask,
    ReconcileTasks,
    RunTask,
    RunTaskGroup,
)
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, ExecutorInfo, FrameworkInfo

log = logging.getLogger(__name__)


@final
class MasterEvents:
    """Handles master events by kind; unknown or incomplete events are logged and dropped."""

    def __init__(
        self,
        context: AgentContext,
        channel: UpdateChannel,
        builtin: BuiltinExecutors,
        custom: CustomExecutors,
        shutdown: Callable[[str], None],
    ) -> None:
        self._context = context
        self._channel = channel
        self._builtin = builtin
        self._custom = custom
        self._shutdown = shutdown

    def handle(self, event: AgentEvent) -> None:
        """Dispatch one event."""
        if event.type == "PING":
            self._context.send(AgentCall(type="PONG", agent_id=ID(value=self._context.agent_id)))
        elif event.type == "RUN_TASK" and event.run_task:
            self.run_task(event.run_task)
        elif event.type == "RUN_TASK_GROUP" and event.run_task_group:
            self.run_task_group(event.run_task_group)
        elif event.type == "KILL_TASK" and event.kill_task:
            self.kill_task(event.kill_task)
        elif event.type == "ACKNOWLEDGE_UPDATE" and event.acknowledge_update:
            self.acknowledge(event.acknowledge_update)
        elif event.type == "SHUTDOWN_EXECUTOR" and event.shutdown_executor:
            self.shutdown_executor(event.shutdown_executor)
        elif event.type == "SHUTDOWN_FRAMEWORK" and event.shutdown_framework:
            self.shutdown_framework(event.shutdown_framework.framework_id.value)
        elif event.type == "FRAMEWORK_MESSAGE" and event.framework_message:
            message = event.framework_message
            self._custom.deliver_message(message.framework_id.value, message.executor_id.value, message.data)
        elif event.type == "RECONCILE" and event.reconcile:
            self.reconcile(event.reconcile)
        elif event.type == "UPDATE_FRAMEWORK" and event.update_framework:
            self.update_framework(event.update_framework.framework_info)
        elif event.type == "SHUTDOWN":
            self._shutdown(event.shutdown.message or "" if event.shutdown else "")
        else:
            log.warning("Ignoring %s event without its body", event.type)

    def run_task(self, run: RunTask) -> None:
        """Start a task: a command task in the agent, or hand it to its custom executor."""
        framework = self._context.state.upsert_framework(run.framework_info)
        framework.terminating = False
        task = run.task
        problem = self._invalid_task(framework, task.task_id.value, task.command, task.executor)
        if problem is not None:
            self._reject(framework.framework_id, task.task_id.value, problem)
            return
        if task.container is not None and task.container.type == "DOCKER":
            self._no_containerizer(framework.framework_id, task.task_id.value)
            return
        log.info("Launching task %s of framework %s", task.task_id.value, framework.framework_id)
        if task.executor is not None:
            self._custom.run_task(framework, task)
        else:
            self._builtin.run_task(framework, task)

    def run_task_group(self, run: RunTaskGroup) -> None:
        """Start a task group under one executor, each task as a command task."""
        framework = self._context.state.upsert_framework(run.framework_info)
        framework.terminating = False
        executor_id = run.executor.executor_id.value
        problems = [
            self._invalid_task(framework, task.task_id.value, task.command, None) for task in run.task_group.tasks
        ]
        if self._context.state.executor(framework.framework_id, executor_id) is not None:
            problems.append(f"Executor '{executor_id}' is already running on this agent")
        problem = next((p for p in problems if p is not None), None)
        if problem is not None or not run.task_group.tasks:
            for task in run.task_group.tasks:
                self._reject(framework.framework_id, task.task_id.value, problem or "Empty task group")
            return
        log.info("Launching task group of executor %s of framework %s", executor_id, framework.framework_id)
        self._builtin.run_task_group(framework, run.executor, run.task_group)

    def kill_task(self, kill: KillTask) -> None:
        """Kill a task; one the agent does not know is answered with TASK_DROPPED."""
        framework_id, task_id = kill.framework_id.value, kill.task_id.value
        task = self._context.state.task(framework_id, task_id)
        executor = self._context.state.executor(framework_id, task.executor_id) if task else None
        if task is None or executor is None:
            status = self._context.reporter.new_status(
                task_id, "TASK_DROPPED", executor_id=task_id, message="Attempted to kill an unknown task"
            )
            self._context.reporter.send_untracked(framework_id, status)
            return
        log.info("Killing task %s of framework %s", task_id, framework_id)
        if task.terminal:
            return
        if executor.kind is ExecutorKind.CUSTOM:
            self._custom.kill_task(executor, task_id, kill.kill_policy)
        else:
            self._builtin.kill_task(executor, task_id, kill.kill_policy)

    def acknowledge(self, ack: AcknowledgeUpdate) -> None:
        """The framework acknowledged an update."""
        self._channel.acknowledge(ack.framework_id.value, ack.task_id.value, ack.uuid)

    def shutdown_executor(self, ref: ExecutorRef) -> None:
        """Shut one executor down."""
        executor = self._context.state.executor(ref.framework_id.value, ref.executor_id.value)
        if executor is not None:
            log.info("Shutting down executor %s of framework %s", executor.executor_id, executor.framework_id)
            self._stop_executor(executor)

    def shutdown_framework(self, framework_id: str) -> None:
        """Kill everything of a framework; it gets no more updates."""
        framework = self._context.state.frameworks.get(framework_id)
        if framework is None:
            return
        log.info("Shutting down framework %s", framework_id)
        framework.terminating = True
        self._channel.forget_framework(framework_id)
        for executor in list(framework.executors.values()):
            self._stop_executor(executor)
        self.framework_maybe_done(framework)

    def reconcile(self, reconcile: ReconcileTasks) -> None:
        """Resend the latest state of tasks that have no update in flight."""
        framework_id = reconcile.framework_id.value
        state = self._context.state
        if reconcile.task_ids:
            tasks = [state.task(framework_id, task_id.value) for task_id in reconcile.task_ids]
        else:
            tasks = list(state.framework_tasks(framework_id))
        for task in tasks:
            if task is not None and task.statuses and not self._channel.manager.pending(framework_id, task.task_id):
                self._resend_latest(task)

    def update_framework(self, info: FrameworkInfo) -> None:
        """Newer FrameworkInfo for a framework with tasks here (others are none of our business)."""
        if info.id is not None and info.id.value in self._context.state.frameworks:
            self._context.state.upsert_framework(info)

    def update_acknowledged(self, ack: UpdateAcknowledged) -> None:
        """An update was acknowledged: tell its executor; retire the task once its terminal one is."""
        task = self._context.state.task(ack.framework_id, ack.task_id)
        if task is None:
            return
        executor = self._context.state.executor(ack.framework_id, task.executor_id)
        if executor is not None and executor.kind is ExecutorKind.CUSTOM and ack.status.source == "SOURCE_EXECUTOR":
            self._custom.acknowledged(ack.framework_id, executor.executor_id, ack.task_id, ack.uuid)
        if ack.stream_closed and task.terminal:
            self._context.state.complete_task(ack.framework_id, ack.task_id)
            if executor is not None:
                self.executor_ended(executor)

    def executor_ended(self, executor: ExecutorState) -> None:
        """Retire an executor once its process has ended and all its tasks are acknowledged."""
        framework = self._context.state.frameworks.get(executor.framework_id)
        muted = framework is not None and framework.terminating  # its updates will never be acknowledged
        if not executor.exited or (executor.tasks and not muted):
            return
        self._context.state.complete_executor(executor.framework_id, executor.executor_id)
        if framework is not None:
            self.framework_maybe_done(framework)

    def framework_maybe_done(self, framework: FrameworkState) -> None:
        """Retire a shut-down framework once none of its executors runs."""
        if framework.terminating and all(executor.exited for executor in framework.executors.values()):
            self._context.state.remove_framework(framework.framework_id)

    def _stop_executor(self, executor: ExecutorState) -> None:
        if executor.kind is ExecutorKind.CUSTOM:
            self._custom.shutdown_executor(executor)
        else:
            self._builtin.shutdown_executor(executor)

    def _resend_latest(self, task: TaskRecord) -> None:
        latest = task.statuses[-1]
        fresh = self._context.reporter.new_status(
            task.task_id,
            latest.state,
            executor_id=task.executor_id,
            message=latest.message,
            reason=latest.reason,
        )
        fresh.source = latest.source
        fresh.container_status = latest.container_status
        self._context.reporter.send_untracked(task.framework_id, fresh)

    def _invalid_task(
        self, framework: FrameworkState, task_id: str, command: CommandInfo | None, executor: ExecutorInfo | None
    ) -> str | None:
        if self._context.state.task(framework.framework_id, task_id) is not None:
            return f"Task '{task_id}' is already running on this agent"
        if (command is None) == (executor is None):
            return "Task should have exactly one of 'command' or 'executor'"
        return None

    def _no_containerizer(self, framework_id: str, task_id: str) -> None:
        # Mesos answers a DOCKER container on an agent without the docker containerizer with TASK_FAILED and
        # REASON_CONTAINER_LAUNCH_FAILED; say plainly why, so that Marathon's lastTaskFailure explains it.
        message = (
            "Failed to launch container: this agent has no Docker containerizer (containerizers: mesos); "
            "a task with ContainerInfo.type DOCKER cannot run here"
        )
        log.warning("Refusing task %s of framework %s: %s", task_id, framework_id, message)
        status = self._context.reporter.new_status(
            task_id, "TASK_FAILED", executor_id=task_id, message=message, reason="REASON_CONTAINER_LAUNCH_FAILED"
        )
        self._context.reporter.send_untracked(framework_id, status)

    def _reject(self, framework_id: str, task_id: str, message: str) -> None:
        log.warning("Rejecting task %s of framework %s: %s", task_id, framework_id, message)
        status = self._context.reporter.new_status(
            task_id, "TASK_ERROR", executor_id=task_id, message=message, reason="REASON_TASK_INVALID"
        )
        if self._context.state.task(framework_id, task_id) is None:
            self._context.reporter.send_untracked(framework_id, status)
        else:
            # The id belongs to a live task: a reliable TASK_ERROR would share (and, once acknowledged,
            # close) that task's update stream, dropping the updates queued behind it.
            self._context.reporter.send_once(framework_id, status)
