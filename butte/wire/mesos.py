"""mesos.v1 messages shared by the scheduler, executor, operator and agent APIs (``mesos.proto``).

Field names and enum spellings match the proto exactly; see ``reference/mesos-v1-api.md`` §2.5.
Sub-messages Butte passes through without interpreting (health checks, discovery, container details it does
not act on) are kept as ``msgspec.Raw`` so they round-trip untouched.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from butte.wire.base import ID, NO_RAW, Message
from butte.wire.resources import AllocationInfo, Attribute, Label, Labels, Resource

__all__ = ["AllocationInfo", "Attribute", "Label", "Labels", "Resource"]

TaskState = Literal[
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_LOST",
    "TASK_DROPPED",
    "TASK_UNREACHABLE",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
    "TASK_UNKNOWN",
]

TERMINAL_STATES: frozenset[str] = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)

# States only PARTITION_AWARE frameworks may see; the others are told TASK_LOST instead (Mesos 1.1+).
PARTITION_AWARE_ONLY_STATES: frozenset[str] = frozenset(
    {"TASK_DROPPED", "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"}
)

Source = Literal["SOURCE_MASTER", "SOURCE_AGENT", "SOURCE_EXECUTOR"]


class DurationInfo(Message):
    nanoseconds: int


class TimeInfo(Message):
    nanoseconds: int


class Capability(Message):
    # Kept as a string: Mesos silently drops enum names it does not know, and so do we.
    type: str | None = None


class Address(Message):
    port: int
    hostname: str | None = None
    ip: str | None = None


class URL(Message):
    scheme: str
    address: Address
    path: str | None = None


class FrameworkInfo(Message):
    user: str
    name: str
    id: ID | None = None
    failover_timeout: float = 0.0
    checkpoint: bool = False
    role: str | None = None
    roles: list[str] = []
    hostname: str | None = None
    principal: str | None = None
    webui_url: str | None = None
    capabilities: list[Capability] = []
    labels: Labels | None = None
    offer_filters: msgspec.Raw = NO_RAW


class MasterInfo(Message):
    id: str
    ip: int
    port: int = 5050
    pid: str | None = None
    hostname: str | None = None
    version: str | None = None
    address: Address | None = None
    capabilities: list[Capability] = []


class AgentInfo(Message):
    hostname: str
    port: int = 5051
    resources: list[Resource] = []
    attributes: list[Attribute] = []
    id: ID | None = None


class EnvironmentVariable(Message):
    name: str
    type: Literal["VALUE", "SECRET", "UNKNOWN"] = "VALUE"
    value: str | None = None
    secret: msgspec.Raw = NO_RAW


class Environment(Message):
    variables: list[EnvironmentVariable] = []


class CommandURI(Message):
    value: str
    executable: bool | None = None
    extract: bool = True
    cache: bool | None = None
    output_file: str | None = None


class CommandInfo(Message):
    uris: list[CommandURI] = []
    environment: Environment | None = None
    shell: bool = True
    value: str | None = None
    arguments: list[str] = []
    user: str | None = None


class ContainerInfo(Message):
    type: Literal["DOCKER", "MESOS"]
    volumes: msgspec.Raw = NO_RAW
    hostname: str | None = None
    docker: msgspec.Raw = NO_RAW
    mesos: msgspec.Raw = NO_RAW
    network_infos: msgspec.Raw = NO_RAW
    linux_info: msgspec.Raw = NO_RAW
    rlimit_info: msgspec.Raw = NO_RAW
    tty_info: msgspec.Raw = NO_RAW


class ExecutorInfo(Message):
    executor_id: ID
    type: Literal["UNKNOWN", "DEFAULT", "CUSTOM"] | None = None
    framework_id: ID | None = None
    command: CommandInfo | None = None
    container: ContainerInfo | None = None
    resources: list[Resource] = []
    name: str | None = None
    source: str | None = None
    data: str | None = None
    discovery: msgspec.Raw = NO_RAW
    shutdown_grace_period: DurationInfo | None = None
    labels: Labels | None = None


class KillPolicy(Message):
    grace_period: DurationInfo | None = None


class TaskInfo(Message):
    name: str
    task_id: ID
    agent_id: ID
    resources: list[Resource] = []
    executor: ExecutorInfo | None = None
    command: CommandInfo | None = None
    container: ContainerInfo | None = None
    health_check: msgspec.Raw = NO_RAW
    check: msgspec.Raw = NO_RAW
    kill_policy: KillPolicy | None = None
    data: str | None = None
    labels: Labels | None = None
    discovery: msgspec.Raw = NO_RAW
    max_completion_time: DurationInfo | None = None
    limits: msgspec.Raw = NO_RAW


class TaskGroupInfo(Message):
    tasks: list[TaskInfo] = []


class ContainerID(Message):
    value: str
    parent: ContainerID | None = None


class ContainerStatus(Message):
    container_id: ContainerID | None = None
    network_infos: msgspec.Raw = NO_RAW
    cgroup_info: msgspec.Raw = NO_RAW
    executor_pid: int | None = None


class TaskStatus(Message):
    task_id: ID
    state: TaskState
    message: str | None = None
    source: Source | None = None
    reason: str | None = None
    data: str | None = None
    agent_id: ID | None = None
    executor_id: ID | None = None
    timestamp: float | None = None
    uuid: str | None = None
    healthy: bool | None = None
    check_status: msgspec.Raw = NO_RAW
    labels: Labels | None = None
    container_status: ContainerStatus | None = None
    unreachable_time: TimeInfo | None = None
    limitation: msgspec.Raw = NO_RAW


class Filters(Message):
    refuse_seconds: float = 5.0


class Launch(Message):
    task_infos: list[TaskInfo] = []


class LaunchGroup(Message):
    executor: ExecutorInfo
    task_group: TaskGroupInfo


class OfferOperation(Message):
    type: str
    id: ID | None = None
    launch: Launch | None = None
    launch_group: LaunchGroup | None = None
    reserve: msgspec.Raw = NO_RAW
    unreserve: msgspec.Raw = NO_RAW
    create: msgspec.Raw = NO_RAW
    destroy: msgspec.Raw = NO_RAW


class Offer(Message):
    id: ID
    framework_id: ID
    agent_id: ID
    hostname: str
    url: URL | None = None
    resources: list[Resource] = []
    attributes: list[Attribute] = []
    executor_ids: list[ID] = []
    allocation_info: AllocationInfo | None = None


class Task(Message):
    """The master's and agent's record of a task (``mesos.v1.Task``), used in reregistration and operator APIs."""

    name: str
    task_id: ID
    framework_id: ID
    agent_id: ID
    state: TaskState
    executor_id: ID | None = None
    resources: list[Resource] = []
    statuses: list[TaskStatus] = []
    status_update_state: TaskState | None = None
    status_update_uuid: str | None = None
    labels: Labels | None = None
    discovery: msgspec.Raw = NO_RAW
    container: ContainerInfo | None = None
    health_check: msgspec.Raw = NO_RAW
    kill_policy: KillPolicy | None = None
    user: str | None = None
