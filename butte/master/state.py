"""The master's truth: configuration, the books (agents, frameworks, offers) and id generation.

Pure: no I/O and no clocks. Handlers in :mod:`frameworks`, :mod:`agents`, :mod:`offers` and :mod:`tasks`
take this state and ``now`` and return effects for the shell.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import butte
from butte.allocator.hierarchical import HierarchicalAllocator
from butte.core.resources import Resources
from butte.master.model import MAX_COMPLETED_FRAMEWORKS, Agent, Framework, Offer, Task
from butte.wire import mesos
from butte.wire.base import ID

# Mesos sends a HEARTBEAT on scheduler streams every 15 s; it is not configurable.
HEARTBEAT_INTERVAL_S = 15.0


@dataclass(frozen=True, slots=True)
class MasterConfig:
    """Flags that shape the master's decisions."""

    master_id: str
    ip: str
    port: int
    hostname: str
    weights: dict[str, float] = field(default_factory=dict)
    roles: frozenset[str] | None = None  # --roles whitelist; None allows every role
    offer_timeout_s: float | None = None
    agent_ping_timeout_s: float = 15.0
    max_agent_ping_timeouts: int = 5
    min_allocatable: Resources | None = None
    # Registry GC of unreachable and gone agents (butte.master.registry_gc), with Mesos's defaults.
    registry_gc_interval_s: float = 15 * 60.0
    registry_max_agent_age_s: float = 14 * 24 * 3600.0
    registry_max_agent_count: int = 100 * 1024


def ip_to_int(ip: str) -> int:
    """MasterInfo.ip: the IPv4 address in network byte order read as a little-endian host integer."""
    parts = [int(p) for p in ip.split(".")] if ip.count(".") == 3 else [0, 0, 0, 0]
    return parts[0] | parts[1] << 8 | parts[2] << 16 | parts[3] << 24


def build_master_info(config: MasterConfig) -> mesos.MasterInfo:
    """The MasterInfo every SUBSCRIBED and REGISTERED carries (and ZooKeeper would hold)."""
    return mesos.MasterInfo(
        id=config.master_id,
        ip=ip_to_int(config.ip),
        port=config.port,
        pid=f"master@{config.ip}:{config.port}",
        hostname=config.hostname,
        version=butte.MESOS_COMPAT_VERSION,
        address=mesos.Address(hostname=config.hostname, ip=config.ip, port=config.port),
        capabilities=[mesos.Capability(type="AGENT_UPDATE")],
    )


class MasterState:
    """Everything the master knows, keyed by id."""

    def __init__(self, config: MasterConfig, rng: random.Random, start_time: float) -> None:
        self.config = config
        self.rng = rng
        self.start_time = start_time
        self.master_info = build_master_info(config)
        self.allocator = HierarchicalAllocator(rng=rng, weights=config.weights, min_allocatable=config.min_allocatable)
        self.agents: dict[str, Agent] = {}
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self.removed_framework_ids: set[str] = set()
        self.offers: dict[str, Offer] = {}
        self.weights: dict[str, float] = dict(config.weights)
        self._next_framework = 0
        self._next_agent = 0
        self._next_offer = 0

    def continue_numbering(self, previous: MasterState) -> None:
        """Go on from the ids ``previous`` handed out: a master that leads again in the same process keeps its
        master id, and Mesos never reuses an agent, framework or offer id (``DuplicatedSlaveIdWhenSlaveReregister``).
        """
        self._next_framework = max(self._next_framework, previous._next_framework)
        self._next_agent = max(self._next_agent, previous._next_agent)
        self._next_offer = max(self._next_offer, previous._next_offer)

    def new_framework_id(self) -> str:
        """``<master id>-NNNN``, as Mesos numbers frameworks; skips ids a framework chose for itself."""
        while True:
            value = f"{self.config.master_id}-{self._next_framework:04d}"
            self._next_framework += 1
            if value not in self.frameworks and value not in self.removed_framework_ids:
                return value

    def new_agent_id(self) -> str:
        """``<master id>-S<n>``."""
        value = f"{self.config.master_id}-S{self._next_agent}"
        self._next_agent += 1
        return value

    def new_offer_id(self) -> str:
        """``<master id>-O<n>``."""
        value = f"{self.config.master_id}-O{self._next_offer}"
        self._next_offer += 1
        return value

    def find_task(self, framework_id: str, task_id: str) -> Task | None:
        """The framework's active task with that id, if any."""
        framework = self.frameworks.get(framework_id)
        return framework.tasks.get(task_id) if framework else None

    def role_allowed(self, role: str) -> bool:
        """Whether ``--roles`` (a whitelist, when given) admits the role."""
        return self.config.roles is None or role == "*" or role in self.config.roles


def id_of(value: str) -> ID:
    """Wrap a plain id as ``{"value": ...}``."""
    return ID(value=value)
