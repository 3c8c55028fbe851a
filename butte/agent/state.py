"""What the agent knows: frameworks, their executors, and the tasks those run (the agent is their truth).

A task stays live (in its executor's ``tasks``) until its terminal update is acknowledged; then it moves to
the executor's completed tasks. Completed records are bounded by Mesos's agent limits. Only the agent's
owning asyncio task mutates this, so there are no locks.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, final

from butte.wire.agent_link import ExecutorRecord as WireExecutorRecord
from butte.wire.base import ID
from butte.wire.mesos import (
    TERMINAL_STATES,
    ExecutorInfo,
    FrameworkInfo,
    Task,
    TaskInfo,
    TaskState,
    TaskStatus,
)

# Mesos's agent keeps this many completed frameworks, executors per framework and tasks per executor.
MAX_COMPLETED_FRAMEWORKS = 50
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200


class ExecutorKind(enum.Enum):
    """Who runs the executor's tasks."""

    COMMAND = "command"  # the built-in command executor, inside the agent: one task
    GROUP = "group"  # a task group, run like the default executor, inside the agent
    CUSTOM = "custom"  # the framework's own executor process, over the executor API


@final
@dataclass(slots=True)
class TaskRecord:
    """One task: what was asked, and every state it has reported."""

    info: TaskInfo
    framework_id: str
    executor_id: str
    user: str | None
    state: TaskState = "TASK_STAGING"
    statuses: list[TaskStatus] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self.info.task_id.value

    @property
    def terminal(self) -> bool:
        """Whether the task has reached a terminal state (its update may still await its ack)."""
        return self.state in TERMINAL_STATES

    def record(self, status: TaskStatus) -> None:
        """Note a new status of this task."""
        self.state = status.state
        self.statuses.append(status)

    def to_wire(self, agent_id: str) -> Task:
        """The ``mesos.v1.Task`` the agent reports when it reregisters."""
        latest = self.statuses[-1] if self.statuses else None
        return Task(
            name=self.info.name,
            task_id=self.info.task_id,
            framework_id=ID(value=self.framework_id),
            executor_id=ID(value=self.executor_id),
            agent_id=ID(value=agent_id),
            state=self.state,
            resources=self.info.resources,
            statuses=list(self.statuses),
            status_update_state=latest.state if latest else None,
            status_update_uuid=latest.uuid if latest else None,
            labels=self.info.labels,
            discovery=self.info.discovery,
            container=self.info.container,
            health_check=self.info.health_check,
            kill_policy=self.info.kill_policy,
            user=self.user,
        )


@final
@dataclass(slots=True)
class ExecutorState:
    """One executor (for command tasks, one per task) and its container."""

    info: ExecutorInfo
    framework_id: str
    kind: ExecutorKind
    container_id: str
    directory: str
    exited: bool = False  # its process (or, in the agent, its tasks) ended
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    completed_tasks: deque[TaskRecord] = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS_PER_EXECUTOR))

    @property
    def executor_id(self) -> str:
        """The executor's id."""
        return self.info.executor_id.value


@final
@dataclass(slots=True)
class FrameworkState:
    """A framework with executors on this agent."""

    info: FrameworkInfo
    terminating: bool = False  # the master shut it down: its tasks are killed and send no more updates
    executors: dict[str, ExecutorState] = field(default_factory=dict)
    completed_executors: deque[ExecutorState] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK)
    )

    @property
    def framework_id(self) -> str:
        """The framework's id (the master always sets it)."""
        return self.info.id.value if self.info.id else ""

    def has_capability(self, name: str) -> bool:
        """Whether the framework declared this capability (e.g. TASK_KILLING_STATE)."""
        return any(capability.type == name for capability in self.info.capabilities)


class StateObserver(Protocol):
    """Told of every change of the live records (the agent's checkpoint journals them)."""

    def executor_added(self, executor: ExecutorState) -> None: ...

    def task_added(self, task: TaskRecord) -> None: ...

    def task_completed(self, task: TaskRecord) -> None: ...

    def executor_completed(self, executor: ExecutorState) -> None: ...

    def framework_removed(self, framework: FrameworkState) -> None: ...


@final
class AgentState:
    """Frameworks, executors and tasks, with an index from (framework, task) to its record."""

    def __init__(self) -> None:
        self.frameworks: dict[str, FrameworkState] = {}
        self.completed_frameworks: deque[FrameworkState] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self._tasks: dict[tuple[str, str], TaskRecord] = {}
        self.observers: list[StateObserver] = []

    def upsert_framework(self, info: FrameworkInfo) -> FrameworkState:
        """The framework's record, created or given the newer info."""
        framework_id = info.id.value if info.id else ""
        framework = self.frameworks.get(framework_id)
        if framework is None:
            framework = self.frameworks[framework_id] = FrameworkState(info)
        else:
            framework.info = info
        return framework

    def executor(self, framework_id: str, executor_id: str) -> ExecutorState | None:
        """A live executor, if any."""
        framework = self.frameworks.get(framework_id)
        return framework.executors.get(executor_id) if framework else None

    def add_executor(self, executor: ExecutorState) -> None:
        """Start tracking an executor of a known framework (an earlier run of the same id is retired)."""
        self.complete_executor(executor.framework_id, executor.executor_id)
        self.frameworks[executor.framework_id].executors[executor.executor_id] = executor
        for observer in self.observers:
            observer.executor_added(executor)

    def add_task(self, executor: ExecutorState, task: TaskRecord) -> None:
        """Start tracking a task of ``executor``."""
        executor.tasks[task.task_id] = task
        self._tasks[(task.framework_id, task.task_id)] = task
        for observer in self.observers:
            observer.task_added(task)

    def task(self, framework_id: str, task_id: str) -> TaskRecord | None:
        """A live task (not yet completed), if any."""
        return self._tasks.get((framework_id, task_id))

    def complete_task(self, framework_id: str, task_id: str) -> TaskRecord | None:
        """Move a live task to its executor's completed tasks."""
        task = self._tasks.pop((framework_id, task_id), None)
        if task is None:
            return None
        executor = self.executor(framework_id, task.executor_id)
        if executor is not None:
            executor.tasks.pop(task_id, None)
            executor.completed_tasks.append(task)
        for observer in self.observers:
            observer.task_completed(task)
        return task

    def complete_executor(self, framework_id: str, executor_id: str) -> None:
        """Move an executor, and any task it still has, to the completed records."""
        framework = self.frameworks.get(framework_id)
        if framework is None or executor_id not in framework.executors:
            return
        executor = framework.executors.pop(executor_id)
        for task_id in list(executor.tasks):
            self._tasks.pop((framework_id, task_id), None)
            executor.completed_tasks.append(executor.tasks.pop(task_id))
        framework.completed_executors.append(executor)
        for observer in self.observers:
            observer.executor_completed(executor)

    def remove_framework(self, framework_id: str) -> None:
        """Move a framework, with its executors, to the completed frameworks."""
        framework = self.frameworks.get(framework_id)
        if framework is None:
            return
        for executor_id in list(framework.executors):
            self.complete_executor(framework_id, executor_id)
        self.completed_frameworks.append(self.frameworks.pop(framework_id))
        for observer in self.observers:
            observer.framework_removed(framework)

    def framework_tasks(self, framework_id: str) -> list[TaskRecord]:
        """The live tasks of one framework."""
        return [task for (fid, _), task in self._tasks.items() if fid == framework_id]

    def reregistration_records(self, agent_id: str) -> tuple[list[Task], list[WireExecutorRecord], list[FrameworkInfo]]:
        """Tasks, executors and frameworks to report in REREGISTER."""
        tasks = [task.to_wire(agent_id) for task in self._tasks.values()]
        executors = [
            WireExecutorRecord(executor_info=executor.info)
            for framework in self.frameworks.values()
            for executor in framework.executors.values()
            if executor.kind is not ExecutorKind.COMMAND
        ]
        frameworks = [framework.info for framework in self.frameworks.values()]
        return tasks, executors, frameworks
