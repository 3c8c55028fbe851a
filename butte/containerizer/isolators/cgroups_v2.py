"""``cgroups/cpu``, ``cgroups/mem`` and ``cgroups/pids`` on cgroup v2: one cgroup per container.

cpus become ``cpu.weight`` (100 per cpu, the v2 twin of 1024 shares per cpu) and,
with ``--cgroups_enable_cfs``, ``cpu.max``; mem becomes ``memory.max``. ``memory.events`` counts OOM kills,
and one inotify instance tells the agent the moment any container's count moves (:mod:`oom_events`).
``cgroup.kill`` ends every process at once where the kernel has it. Controllers the host keeps on a v1
hierarchy are absent here: their files are simply not written.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import final

from butte.containerizer.isolators.base import (
    ContainerLimits,
    Isolator,
    Limitation,
    Statistics,
    memory_limitation,
    read_int,
    read_keyed,
    write_text,
)
from butte.containerizer.isolators.cgroup_files import cgroup_pids, kill_cgroup, make_cgroup, remove_cgroup
from butte.containerizer.isolators.cgroups_v1 import CFS_PERIOD_US, MIN_CFS_QUOTA_US
from butte.containerizer.isolators.oom_events import EventSource, MemoryEventsWatch

# The kernel treats v2's default weight 100 as v1's default 1024 shares: one cpu is weight 100.
WEIGHT_PER_CPU = 100
MIN_WEIGHT, MAX_WEIGHT = 1, 10_000


def cpu_weight(cpus: float) -> int:
    """A container's ``cpu.weight``: proportional to its cpus, as 1024 shares per cpu are on v1."""
    return min(MAX_WEIGHT, max(MIN_WEIGHT, round(cpus * WEIGHT_PER_CPU)))


@final
class CgroupsV2(Isolator):
    """Cgroups on the unified hierarchy, made under ``base`` (``<unified>/<agent's cgroup>/<cgroups_root>``)."""

    name = "cgroups-v2"

    def __init__(self, base: str, controllers: frozenset[str], enable_cfs: bool = False) -> None:
        self._base = base
        self._controllers = controllers
        self._enable_cfs = enable_cfs
        self._base_ready = False
        self._watch: MemoryEventsWatch | None = None  # made on the first container with a memory limit to watch
        self._watch_lock = threading.Lock()

    def _dir(self, container_id: str) -> str:
        return os.path.join(self._base, container_id)

    def _make_base(self) -> None:
        os.makedirs(self._base, exist_ok=True)
        if self._controllers:
            # Children get only the controllers their parent enables; a refusal leaves them without.
            enable = " ".join(f"+{name}" for name in sorted(self._controllers))
            with contextlib.suppress(OSError):
                write_text(os.path.join(self._base, "cgroup.subtree_control"), enable)
        self._base_ready = True

    def prepare(self, container_id: str, limits: ContainerLimits) -> None:
        """Make the container's cgroup and write its limits.

        Raises:
            OSError: the cgroup could not be made or limited.
        """
        if not self._base_ready:
            self._make_base()
        directory = self._dir(container_id)
        make_cgroup(directory)
        self._write_cpu(directory, limits)
        if "memory" in self._controllers and limits.mem_bytes is not None:
            write_text(os.path.join(directory, "memory.max"), str(limits.mem_bytes))

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        """New cpu limits; ``memory.max`` only ever grows (lowering it below use would reclaim or OOM-kill).

        Raises:
            OSError: a limit could not be written.
        """
        directory = self._dir(container_id)
        self._write_cpu(directory, limits)
        if "memory" not in self._controllers or limits.mem_bytes is None:
            return
        path = os.path.join(directory, "memory.max")
        current = read_int(path)  # None for "max": no limit yet
        if current is None or limits.mem_bytes > current:
            write_text(path, str(limits.mem_bytes))

    def _write_cpu(self, directory: str, limits: ContainerLimits) -> None:
        if "cpu" not in self._controllers or limits.cpus is None:
            return
        write_text(os.path.join(directory, "cpu.weight"), str(cpu_weight(limits.cpus)))
        if self._enable_cfs:
            quota = max(MIN_CFS_QUOTA_US, int(limits.cpus * CFS_PERIOD_US))
            write_text(os.path.join(directory, "cpu.max"), f"{quota} {CFS_PERIOD_US}")

    def oom_events(self, container_id: str) -> EventSource | None:
        """The shared inotify watch, now also on the container's ``memory.events``.

        Raises:
            OSError: inotify refused the watch.
        """
        if "memory" not in self._controllers:
            return None
        with self._watch_lock:
            if self._watch is None:
                self._watch = MemoryEventsWatch()
        self._watch.watch(container_id, os.path.join(self._dir(container_id), "memory.events"))
        return self._watch

    def join_paths(self, container_id: str) -> tuple[str, ...]:
        """The container's ``cgroup.procs``."""
        return (os.path.join(self._dir(container_id), "cgroup.procs"),)

    def usage(self, container_id: str) -> Statistics:
        """CPU times (``cpu.stat`` is always there on v2), memory when the controller is, process count."""
        directory = self._dir(container_id)
        cpu = read_keyed(os.path.join(directory, "cpu.stat"))
        stats: Statistics = {
            "cpus_user_time_secs": cpu.get("user_usec", 0) / 1e6,
            "cpus_system_time_secs": cpu.get("system_usec", 0) / 1e6,
            "processes": len(cgroup_pids(directory)),
        }
        if "nr_periods" in cpu:
            stats["cpus_nr_periods"] = cpu["nr_periods"]
            stats["cpus_nr_throttled"] = cpu.get("nr_throttled", 0)
            stats["cpus_throttled_time_secs"] = cpu.get("throttled_usec", 0) / 1e6
        if "memory" in self._controllers:
            memory = read_keyed(os.path.join(directory, "memory.stat"))
            stats["mem_rss_bytes"] = memory.get("anon", 0)
            stats["mem_cache_bytes"] = memory.get("file", 0)
            stats["mem_total_bytes"] = read_int(os.path.join(directory, "memory.current")) or 0
            limit = read_int(os.path.join(directory, "memory.max"))
            if limit is not None:
                stats["mem_limit_bytes"] = limit
        return stats

    def limitation(self, container_id: str) -> Limitation | None:
        """A memory limitation once ``memory.events`` counts an OOM kill."""
        if "memory" not in self._controllers:
            return None
        directory = self._dir(container_id)
        if read_keyed(os.path.join(directory, "memory.events")).get("oom_kill", 0) == 0:
            return None
        limit = read_int(os.path.join(directory, "memory.max"))
        return memory_limitation(limit, read_int(os.path.join(directory, "memory.peak")))

    def kill(self, container_id: str) -> bool:
        """``cgroup.kill`` where the kernel has it, then SIGKILL rounds until the cgroup is empty."""
        directory = self._dir(container_id)
        with contextlib.suppress(OSError):
            write_text(os.path.join(directory, "cgroup.kill"), "1")
        kill_cgroup(directory)
        return True

    def cleanup(self, container_id: str) -> None:
        """Remove the container's cgroup.

        Raises:
            OSError: it could not be removed.
        """
        remove_cgroup(self._dir(container_id))

    def destroy(self, container_id: str) -> None:
        """Remove the container's cgroup; only when something still runs in it, ``cgroup.kill`` it first.

        Raises:
            OSError: it could not be removed.
        """
        try:
            os.rmdir(self._dir(container_id))
        except FileNotFoundError:
            return
        except OSError:
            self.kill(container_id)
            self.cleanup(container_id)
