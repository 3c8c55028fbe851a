"""mesos.v1.executor Call and Event (``executor.proto``); see ``reference/mesos-v1-api.md`` §3."""

from __future__ import annotations

from typing import Literal

from butte.wire.base import ID, Message
from butte.wire.mesos import (
    AgentInfo,
    ContainerID,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)

ExecutorCallType = Literal["UNKNOWN", "SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT"]


class ExecutorUpdate(Message):
    status: TaskStatus


class ExecutorSubscribe(Message):
    unacknowledged_tasks: list[TaskInfo] = []
    unacknowledged_updates: list[ExecutorUpdate] = []


class DataMessage(Message):
    data: str


class ExecutorCall(Message):
    executor_id: ID
    framework_id: ID
    type: ExecutorCallType | None = None
    subscribe: ExecutorSubscribe | None = None
    update: ExecutorUpdate | None = None
    message: DataMessage | None = None


class ExecutorSubscribed(Message):
    executor_info: ExecutorInfo
    framework_info: FrameworkInfo
    agent_info: AgentInfo
    container_id: ContainerID | None = None


class ExecutorLaunch(Message):
    task: TaskInfo


class ExecutorLaunchGroup(Message):
    task_group: TaskGroupInfo


class ExecutorKill(Message):
    task_id: ID
    kill_policy: KillPolicy | None = None


class ExecutorAcknowledged(Message):
    task_id: ID
    uuid: str


class ExecutorError(Message):
    message: str


ExecutorEventType = Literal[
    "UNKNOWN",
    "SUBSCRIBED",
    "LAUNCH",
    "LAUNCH_GROUP",
    "KILL",
    "ACKNOWLEDGED",
    "MESSAGE",
    "ERROR",
    "SHUTDOWN",
    "HEARTBEAT",
]


class ExecutorEvent(Message):
    type: ExecutorEventType
    subscribed: ExecutorSubscribed | None = None
    launch: ExecutorLaunch | None = None
    launch_group: ExecutorLaunchGroup | None = None
    kill: ExecutorKill | None = None
    acknowledged: ExecutorAcknowledged | None = None
    message: DataMessage | None = None
    error: ExecutorError | None = None
