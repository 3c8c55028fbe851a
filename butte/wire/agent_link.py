"""The internal master<->agent API (DESIGN.md §7), in the style of the public v1 APIs.

The agent POSTs REGISTER or REREGISTER to the master's ``/api/v1/agent`` and reads a RecordIO stream of
:class:`AgentEvent`. Its other calls (UPDATE, PONG, EXECUTOR_EXITED, MESSAGE) are POSTs that carry the
stream id in ``Mesos-Stream-Id``. Every event names the leader's epoch so an agent can ignore a deposed leader.
"""

from __future__ import annotations

from typing import Literal

from butte.wire.base import ID, Message
from butte.wire.mesos import (
    AgentInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    Task,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)

AgentCallType = Literal["REGISTER", "REREGISTER", "UPDATE", "PONG", "EXECUTOR_EXITED", "MESSAGE"]


class Register(Message):
    agent_info: AgentInfo
    version: str | None = None


class ExecutorRecord(Message):
    """An executor the agent runs, with the framework it belongs to (ExecutorInfo.framework_id set)."""

    executor_info: ExecutorInfo


class Reregister(Message):
    agent_info: AgentInfo
    tasks: list[Task] = []
    executors: list[ExecutorRecord] = []
    frameworks: list[FrameworkInfo] = []
    version: str | None = None


class StatusUpdate(Message):
    framework_id: ID
    status: TaskStatus


class ExecutorExited(Message):
    framework_id: ID
    executor_id: ID
    status: int | None = None


class ExecutorToFramework(Message):
    framework_id: ID
    executor_id: ID
    data: str


class AgentCall(Message):
    type: AgentCallType
    agent_id: ID | None = None
    register: Register | None = None
    reregister: Reregister | None = None
    # Updates that became ready together travel in one call: each call costs the master a request.
    updates: list[StatusUpdate] = []
    executor_exited: ExecutorExited | None = None
    message: ExecutorToFramework | None = None


class Registered(Message):
    agent_id: ID
    master_info: MasterInfo
    ping_interval_seconds: float | None = None


class RunTask(Message):
    framework_info: FrameworkInfo
    task: TaskInfo


class RunTaskGroup(Message):
    framework_info: FrameworkInfo
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class KillTask(Message):
    framework_id: ID
    task_id: ID
    kill_policy: KillPolicy | None = None


class FrameworkRef(Message):
    framework_id: ID


class ExecutorRef(Message):
    framework_id: ID
    executor_id: ID


class AcknowledgeUpdate(Message):
    framework_id: ID
    task_id: ID
    uuid: str


class FrameworkMessage(Message):
    framework_id: ID
    executor_id: ID
    data: str


class ReconcileTasks(Message):
    """Ask the agent to resend the latest state of these tasks (all of the framework's when empty)."""

    framework_id: ID
    task_ids: list[ID] = []


class ShutdownAgent(Message):
    message: str | None = None


class UpdateFrameworkInfo(Message):
    framework_info: FrameworkInfo


AgentEventType = Literal[
    "REGISTERED",
    "REREGISTERED",
    "RUN_TASK",
    "RUN_TASK_GROUP",
    "KILL_TASK",
    "SHUTDOWN_FRAMEWORK",
    "SHUTDOWN_EXECUTOR",
    "ACKNOWLEDGE_UPDATE",
    "PING",
    "FRAMEWORK_MESSAGE",
    "RECONCILE",
    "UPDATE_FRAMEWORK",
    "SHUTDOWN",
]


class AgentEvent(Message):
    type: AgentEventType
    epoch: int | None = None
    registered: Registered | None = None
    run_task: RunTask | None = None
    run_task_group: RunTaskGroup | None = None
    kill_task: KillTask | None = None
    shutdown_framework: FrameworkRef | None = None
    shutdown_executor: ExecutorRef | None = None
    acknowledge_update: AcknowledgeUpdate | None = None
    framework_message: FrameworkMessage | None = None
    reconcile: ReconcileTasks | None = None
    update_framework: UpdateFrameworkInfo | None = None
    shutdown: ShutdownAgent | None = None
