"""``cgroups/cpu``, ``cgroups/mem`` and ``cgroups/pids`` on cgroup v1: one cgroup per container per hierarchy.

cpus become ``cpu.shares`` (1024 per cpu, as Mesos) and, with ``--cgroups_enable_cfs``, a CFS quota over a
100 ms period; mem becomes ``memory.limit_in_bytes``. The kernel's OOM killer enforces the memory limit;
the ``oom_kill`` count in ``memory.oom_control`` tells the agent it happened, and an eventfd registered on
that file tells it at once: butte-isolate's own, for a command task it sets up (it ends the container), else
the agent's (:mod:`oom_events`, one epoll set for every container). Usage comes from
``cpuacct.stat`` and ``memory.stat``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
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
from butte.containerizer.isolators.cgroup_pool import RECYCLE_MAX_CHARGED_BYTES, CgroupPool, idle_name
from butte.containerizer.isolators.oom_events import EventSource, OomEventFds

CPU_SHARES_PER_CPU = 1024
MIN_CPU_SHARES = 2  # the kernel's floor
CFS_PERIOD_US = 100_000  # Mesos's 100 ms
MIN_CFS_QUOTA_US = 1_000  # the kernel's floor
# A recycled memory cgroup may still hold charges of its last container (up to RECYCLE_MAX_CHARGED_BYTES): a
# container with a limit near that gets a new one, or writing its limit could fail.
POOL_MIN_MEMORY_BYTES = 2 * RECYCLE_MAX_CHARGED_BYTES
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# What a new cgroup holds: written to a recycled one whose next container sets no such limit.
DEFAULT_LIMITS = {"cpu.shares": str(CPU_SHARES_PER_CPU), "memory.limit_in_bytes": "-1"}


@final
class CgroupsV1(Isolator):
    """Cgroups on v1 hierarchies; ``bases`` maps each controller (cpu, cpuacct, memory, pids) to the
    directory its containers' cgroups are made in (``<hierarchy>/<agent's cgroup>/<cgroups_root>``)."""

    name = "cgroups-v1"
    helps = True

    def __init__(self, bases: Mapping[str, str], enable_cfs: bool = False) -> None:
        self._bases = {controller: base.rstrip("/") for controller, base in bases.items()}
        # Co-mounted controllers (cpu,cpuacct) share one directory: make and join it once.
        self._unique_bases = tuple(sorted(set(self._bases.values())))
        self._enable_cfs = enable_cfs
        self._oom: OomEventFds | None = None  # made on the first container with a memory cgroup to watch
        self._oom_lock = threading.Lock()
        self._pool = self._make_pool()

    def _make_pool(self) -> CgroupPool | None:
        """The pool of recycled cgroups, where every counter the agent reports can be reset (cgroup_pool)."""
        cpuacct = self._bases.get("cpuacct")
        if self._enable_cfs or (cpuacct is not None and not _has_split_usage(cpuacct)):
            return None
        memory = self._bases.get("memory")
        counters = ((cpuacct, "cpuacct.usage"), (memory, "memory.max_usage_in_bytes"))
        resets = [(base, control, "0") for base, control in counters if base is not None]
        order = sorted(self._unique_bases, key=lambda base: base != memory)  # as _helper_dirs
        pool = CgroupPool(order, resets, memory)
        pool.sweep()
        return pool

    # Paths are joined with f-strings: these run several times per task launched, and a container id has no "/".
    def _dir(self, controller: str, container_id: str) -> str | None:
        base = self._bases.get(controller)
        return None if base is None else f"{base}/{container_id}"

    def _dirs(self, container_id: str) -> list[str]:
        return [f"{base}/{container_id}" for base in self._unique_bases]

    def prepare(self, container_id: str, limits: ContainerLimits) -> None:
        """Make the container's cgroups and write its limits.

        Raises:
            OSError: a cgroup could not be made or limited.
        """
        for directory in self._dirs(container_id):
            make_cgroup(directory)
        for path, value in self._limit_writes(container_id, limits):
            write_text(path, value)

    def helper_setup(self, container_id: str, limits: ContainerLimits) -> tuple[str, ...]:
        """The cgroups made, limited, watched for OOM and joined by butte-isolate, which removes them after."""
        args = [part for directory in self._helper_dirs(container_id) for part in ("--cgroup", directory)]
        writes = self._limit_writes(container_id, limits)
        if self._pool is not None and (limits.mem_bytes is None or limits.mem_bytes >= POOL_MIN_MEMORY_BYTES):
            args += self._pool.setup_args(container_id)
            held = self._pool.limits_held(container_id)
            wanted = self._limits_on_reuse(container_id, writes, held)
            args += self._pool.recycle_args(container_id, {control: value for control, (_, value) in wanted.items()})
            writes = [(path, value) for control, (path, value) in wanted.items() if held.get(control) != value]
        for path, value in writes:
            args += ["--write", path, value]
        memory_dir = self._dir("memory", container_id)
        if memory_dir is not None:
            args += ["--oom", f"{memory_dir}/memory.oom_control"]  # the helper watches for OOMs itself
        return tuple(args)

    def _limits_on_reuse(
        self, container_id: str, writes: list[tuple[str, str]], held: dict[str, str]
    ) -> dict[str, tuple[str, str]]:
        """Control file -> (path, value) the container's cgroups must hold: its own limits, and the kernel's
        default for a limit that recycled cgroups still hold from their last container and this one does not set."""
        wanted = {path.rsplit("/", 1)[1]: (path, value) for path, value in writes}
        for control in held.keys() - wanted.keys():
            directory = self._dir(control.split(".", 1)[0], container_id)
            if control in DEFAULT_LIMITS and directory is not None:
                wanted[control] = (f"{directory}/{control}", DEFAULT_LIMITS[control])
        return wanted

    def removed_by_helper(self, container_id: str) -> bool:
        """Whether the container's cgroups are gone: the helper removes the first one made last."""
        directories = self._helper_dirs(container_id)
        return not directories or not os.path.isdir(directories[0])

    def settle_after_helper(self, container_id: str) -> bool:
        """Pool what the helper recycled; whether nothing of the container is left for :meth:`destroy`."""
        if self._pool is None:
            return self.removed_by_helper(container_id)
        return self._pool.settle(container_id)

    def _helper_dirs(self, container_id: str) -> list[str]:
        """The container's cgroups in the order the helper makes them: memory first, so that it goes last and
        :meth:`removed_by_helper` finds every cgroup of the container gone once that one is."""
        memory_dir = self._dir("memory", container_id)
        return sorted(self._dirs(container_id), key=lambda directory: directory != memory_dir)

    def _limit_writes(self, container_id: str, limits: ContainerLimits) -> list[tuple[str, str]]:
        """The control files that hold the container's limits, with their values."""
        writes = self._cpu_writes(container_id, limits)
        memory_dir = self._dir("memory", container_id)
        if memory_dir is not None and limits.mem_bytes is not None:
            writes.append((f"{memory_dir}/memory.limit_in_bytes", str(limits.mem_bytes)))
        return writes

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        """New cpu limits; the memory limit only ever grows.

        Mesos's memory isolator lowers only the soft limit when a container shrinks: lowering the hard limit
        below what is in use would OOM-kill the container.

        Raises:
            OSError: a limit could not be written.
        """
        for path, value in self._cpu_writes(container_id, limits):
            write_text(path, value)
        memory_dir = self._dir("memory", container_id)
        if memory_dir is None or limits.mem_bytes is None:
            return
        path = os.path.join(memory_dir, "memory.limit_in_bytes")
        current = read_int(path)
        if current is None or limits.mem_bytes > current:
            write_text(path, str(limits.mem_bytes))

    def _cpu_writes(self, container_id: str, limits: ContainerLimits) -> list[tuple[str, str]]:
        cpu_dir = self._dir("cpu", container_id)
        if cpu_dir is None or limits.cpus is None:
            return []
        shares = max(MIN_CPU_SHARES, int(CPU_SHARES_PER_CPU * limits.cpus))
        writes = [(f"{cpu_dir}/cpu.shares", str(shares))]
        if self._enable_cfs:
            quota = max(MIN_CFS_QUOTA_US, int(limits.cpus * CFS_PERIOD_US))
            writes += [
                (f"{cpu_dir}/cpu.cfs_period_us", str(CFS_PERIOD_US)),
                (f"{cpu_dir}/cpu.cfs_quota_us", str(quota)),
            ]
        return writes

    def oom_events(self, container_id: str) -> EventSource | None:
        """The shared set of OOM eventfds, now also the container's, when it has a memory cgroup.

        Raises:
            OSError: the kernel refused the registration.
        """
        memory_dir = self._dir("memory", container_id)
        if memory_dir is None:
            return None
        oom = self._oom_fds()
        oom.watch(container_id, memory_dir)
        return oom

    def _oom_fds(self) -> OomEventFds:
        """The shared set of OOM eventfds, made on first use."""
        with self._oom_lock:
            if self._oom is None:
                self._oom = OomEventFds()
            return self._oom

    def join_paths(self, container_id: str) -> tuple[str, ...]:
        """Every hierarchy's ``cgroup.procs`` of the container."""
        return tuple(f"{base}/{container_id}/cgroup.procs" for base in self._unique_bases)

    def usage(self, container_id: str) -> Statistics:
        """CPU times, memory and process counts of the container."""
        stats: Statistics = {}
        cpuacct_dir = self._dir("cpuacct", container_id)
        if cpuacct_dir is not None:
            stats.update(_cpu_times(cpuacct_dir))
        cpu_dir = self._dir("cpu", container_id)
        if cpu_dir is not None and self._enable_cfs:
            throttling = read_keyed(os.path.join(cpu_dir, "cpu.stat"))
            stats["cpus_nr_periods"] = throttling.get("nr_periods", 0)
            stats["cpus_nr_throttled"] = throttling.get("nr_throttled", 0)
            stats["cpus_throttled_time_secs"] = throttling.get("throttled_time", 0) / 1e9
        stats.update(self._memory_usage(container_id))
        any_dir = self._dirs(container_id)
        if any_dir:
            stats["processes"] = len(cgroup_pids(any_dir[0]))
        return stats

    def _memory_usage(self, container_id: str) -> Statistics:
        memory_dir = self._dir("memory", container_id)
        if memory_dir is None:
            return {}
        memory = read_keyed(os.path.join(memory_dir, "memory.stat"))
        stats: Statistics = {
            "mem_rss_bytes": memory.get("total_rss", memory.get("rss", 0)),
            "mem_cache_bytes": memory.get("total_cache", memory.get("cache", 0)),
            "mem_total_bytes": read_int(os.path.join(memory_dir, "memory.usage_in_bytes")) or 0,
        }
        limit = read_int(os.path.join(memory_dir, "memory.limit_in_bytes"))
        if limit is not None:
            stats["mem_limit_bytes"] = limit
        return stats

    def limitation(self, container_id: str) -> Limitation | None:
        """A memory limitation once the OOM killer has killed in the container."""
        memory_dir = self._dir("memory", container_id)
        if memory_dir is None:
            return None
        if read_keyed(os.path.join(memory_dir, "memory.oom_control")).get("oom_kill", 0) == 0:
            return None
        limit = read_int(os.path.join(memory_dir, "memory.limit_in_bytes"))
        return memory_limitation(limit, read_int(os.path.join(memory_dir, "memory.max_usage_in_bytes")))

    def kill(self, container_id: str) -> bool:
        """SIGKILL every process in the container's cgroup until it is empty."""
        directories = self._dirs(container_id)
        for directory in directories:
            kill_cgroup(directory)
        return bool(directories)

    def cleanup(self, container_id: str) -> None:
        """Remove the container's cgroups.

        Raises:
            OSError: a cgroup could not be removed.
        """
        for directory in self._dirs(container_id):
            remove_cgroup(directory)
            remove_cgroup(f"{os.path.dirname(directory)}/{idle_name(container_id)}")  # only some were recycled

    def close(self) -> None:
        """Remove the idle cgroups of the pool."""
        if self._pool is not None:
            self._pool.close()

    def destroy(self, container_id: str) -> None:
        """Remove the container's cgroups, killing only what keeps one of them busy (:func:`remove_cgroup`).

        Raises:
            OSError: a cgroup could not be removed.
        """
        self.cleanup(container_id)


def _has_split_usage(cpuacct_base: str) -> bool:
    """Whether cpuacct counts user and system time in nanoseconds (Linux 4.7+): those files are reset by
    writing ``cpuacct.usage``, where ``cpuacct.stat`` never goes back (the kernel keeps it monotonic)."""
    return os.path.exists(os.path.join(os.path.dirname(cpuacct_base), "cpuacct.usage_user"))


def _cpu_times(cpuacct_dir: str) -> Statistics:
    """The container's user and system cpu seconds."""
    user_ns = read_int(f"{cpuacct_dir}/cpuacct.usage_user")
    system_ns = read_int(f"{cpuacct_dir}/cpuacct.usage_sys")
    if user_ns is not None and system_ns is not None:
        return {"cpus_user_time_secs": user_ns / 1e9, "cpus_system_time_secs": system_ns / 1e9}
    times = read_keyed(f"{cpuacct_dir}/cpuacct.stat")
    return {
        "cpus_user_time_secs": times.get("user", 0) / TICKS_PER_S,
        "cpus_system_time_secs": times.get("system", 0) / TICKS_PER_S,
    }
