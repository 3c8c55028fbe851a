"""The master's books: agents, frameworks, tasks and offers (plain data, owned by :mod:`butte.master.state`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from butte.core.resources import Resources
from butte.wire import mesos

# Mesos keeps the last 1,000 completed tasks per framework and the last 50 completed frameworks.
MAX_COMPLETED_TASKS_PER_FRAMEWORK = 1000
MAX_COMPLETED_FRAMEWORKS = 50


class AgentLink(Enum):
    """Whether the master can talk to an agent right now."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    # Missed its pings: marked unreachable in the registry; may reregister (butte.master.unreachable).
    UNREACHABLE = "unreachable"
    # Marked gone by the operator: told to shut down and never readmitted.
    GONE = "gone"


@dataclass(slots=True)
class Agent:
    """An admitted agent as the master sees it."""

    id: str
    info: mesos.AgentInfo
    ip: str
    total: Resources
    registered_time: float
    reregistered_time: float | None = None
    link: AgentLink = AgentLink.CONNECTED
    stream_id: str = ""
    last_pong: float = 0.0
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)  # (framework_id, task_id)
    executors: dict[tuple[str, str], RunningExecutor] = field(default_factory=dict)  # (framework_id, id)
    offers: set[str] = field(default_factory=set)
    version: str | None = None
    unreachable_time: float | None = None

    @property
    def hostname(self) -> str:
        return self.info.hostname

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def pid(self) -> str:
        return f"slave(1)@{self.ip}:{self.port}"

    @property
    def active(self) -> bool:
        return self.link is AgentLink.CONNECTED

    @property
    def registered(self) -> bool:
        """Admitted and not lost: connected, or disconnected for now (not unreachable, not gone)."""
        return self.link in (AgentLink.CONNECTED, AgentLink.DISCONNECTED)


@dataclass(slots=True)
class RunningExecutor:
    """A framework's executor on an agent; its resources are held apart from its tasks', as in Mesos."""

    info: mesos.ExecutorInfo
    role: str
    resources: Resources


@dataclass(slots=True)
class Task:
    """A task the master knows, with the statuses it has seen."""

    info: mesos.TaskInfo
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    executor_id: str | None
    state: str = "TASK_STAGING"
    statuses: list[mesos.TaskStatus] = field(default_factory=list)
    latest: mesos.TaskStatus | None = None
    # The update the framework has not acknowledged yet (state and uuid), as Mesos's Task records it.
    unacked_state: str | None = None
    unacked_uuid: str | None = None
    resources_released: bool = False
    # Its framework (not partition-aware) was told TASK_LOST, and the task was found running when its agent
    # came back: it is being killed, and the framework hears only how it ends.
    killed_after_lost: bool = False

    @property
    def id(self) -> str:
        return self.info.task_id.value


@dataclass(slots=True)
class Offer:
    """Resources on one agent offered to one framework for one role."""

    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created_at: float


class FrameworkLink(Enum):
    """A framework's subscription: connected, disconnected (failover timer running) or recovered."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    # Known only from agents' reregistration after a master restart; it has not resubscribed yet.
    RECOVERED = "recovered"


@dataclass(slots=True)
class Framework:
    """A framework the master knows."""

    id: str
    info: mesos.FrameworkInfo
    registered_time: float
    link: FrameworkLink = FrameworkLink.CONNECTED
    stream_id: str = ""
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    failover_deadline: float | None = None
    suppressed_roles: frozenset[str] = frozenset()
    tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS_PER_FRAMEWORK))
    offers: set[str] = field(default_factory=set)
    # Executors of this framework per agent, so their resources are counted once.
    executors: dict[tuple[str, str], RunningExecutor] = field(default_factory=dict)  # (agent_id, id)

    @property
    def roles(self) -> frozenset[str]:
        return framework_roles(self.info)

    @property
    def connected(self) -> bool:
        return self.link is FrameworkLink.CONNECTED

    def has_capability(self, name: str) -> bool:
        return any(c.type == name for c in self.info.capabilities)

    @property
    def partition_aware(self) -> bool:
        return self.has_capability("PARTITION_AWARE")

    @property
    def multi_role(self) -> bool:
        return self.has_capability("MULTI_ROLE")


def framework_roles(info: mesos.FrameworkInfo) -> frozenset[str]:
    """The roles a framework subscribes to: ``roles`` with MULTI_ROLE, else ``role`` (default ``*``)."""
    if any(c.type == "MULTI_ROLE" for c in info.capabilities):
        return frozenset(info.roles)
    return frozenset({info.role or "*"})
