"""The agent's settings, from its Mesos-named flags (reference/mesos-v1-api.md §7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, final

from butte.core.resources import Attributes, Resources


@final
@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the agent is told at start."""

    master: str
    work_dir: str
    resources: Resources
    attributes: Attributes = field(default_factory=Attributes)
    ip: str = "127.0.0.1"
    port: int = 5051
    hostname: str = "localhost"
    switch_user: bool = True
    executor_shutdown_grace_period_s: float = 5.0
    executor_registration_timeout_s: float = 60.0
    registration_backoff_factor_s: float = 1.0
    recovery_timeout_s: float = 900.0
    executor_reregistration_timeout_s: float = 2.0
    # Recovery across agent restarts (Mesos's --recover, --strict) and sandbox GC (--gc_delay and friends).
    recover: Literal["reconnect", "cleanup"] = "reconnect"
    strict: bool = True
    gc_delay_s: float = 7 * 24 * 3600.0
    disk_watch_interval_s: float = 60.0
    gc_disk_headroom: float = 0.1
    # Isolation (Mesos's --isolation, --cgroups_root, --cgroups_enable_cfs): see containerizer/isolators.
    isolation: str = "posix/cpu,posix/mem"
    cgroups_root: str = "butte"
    cgroups_enable_cfs: bool = False
    # The fetcher's cache (--fetcher_cache_dir, "" meaning <work_dir>/fetch; --fetcher_cache_size, Mesos's 2GB).
    fetcher_cache_dir: str = ""
    fetcher_cache_size_bytes: int = 2 * 1024**3
    # Flags as given, for the ``flags`` object of /state.
    flags: Mapping[str, str] = field(default_factory=dict)
