"""``posix/cpu`` and ``posix/mem``: usage from ``/proc`` and a memory limit enforced by polling.

Where cgroups cannot be written (an unprivileged agent, no cgroup mounts), a container is the sessions its
processes were started in (each task leads a new session). One sweep of ``/proc`` per poll sums every
session's cpu times and resident memory; a container above its memory limit is reported as limited, and
the agent kills it with Mesos's REASON_CONTAINER_LIMITATION_MEMORY.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import final

from butte.containerizer.isolators.base import ContainerLimits, Isolator, Limitation, Statistics, memory_limitation

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# A sweep reads every /proc/<pid>/stat; reuse it for calls this close together.
SWEEP_REUSE_S = 0.2


@final
@dataclass(slots=True)
class SessionUsage:
    """What one session's processes use right now."""

    pids: list[int] = field(default_factory=list)
    user_ticks: int = 0
    system_ticks: int = 0
    rss_bytes: int = 0
    leader_start: int | None = None  # start time of the process whose pid is the session id, if alive


def sweep_proc(proc: str = "/proc", only: int | None = None) -> dict[int, SessionUsage]:
    """Every process's (or just ``only``'s) cpu times and rss, summed by session id."""
    sessions: dict[int, SessionUsage] = {}
    for name in [str(only)] if only is not None else os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue  # it exited while we looked
        # The command name may hold spaces and parentheses: the fields start after its last ')'.
        fields = raw[raw.rfind(b")") + 2 :].split()
        session = int(fields[3])
        usage = sessions.setdefault(session, SessionUsage())
        usage.pids.append(int(name))
        if session == int(name):
            usage.leader_start = int(fields[19])
        usage.user_ticks += int(fields[11])
        usage.system_ticks += int(fields[12])
        usage.rss_bytes += int(fields[21]) * PAGE_BYTES
    return sessions


@final
class Posix(Isolator):
    """Measures (and, with ``mem``, limits) containers by polling ``/proc``."""

    name = "posix"

    def __init__(self, enforce_memory: bool = True, proc: str = "/proc") -> None:
        self._enforce_memory = enforce_memory
        self._proc = proc
        # Each container's sessions, with their leader's start time: a session id whose pid was reused
        # (the leader gone, a new task's child given its pid) is someone else's session now.
        self._sessions: dict[str, dict[int, int | None]] = {}
        self._limits: dict[str, ContainerLimits] = {}
        self._max_rss: dict[str, int] = {}
        self._sweep: dict[int, SessionUsage] = {}
        self._swept_at = float("-inf")  # when the kept sweep started
        # A sweep that started before a spawn returned may have seen the child between vfork and exec, when
        # it still shared the agent's memory: a session is only measured by sweeps begun after it was joined.
        self._isolated_at: dict[int, float] = {}

    def prepare(self, container_id: str, limits: ContainerLimits) -> None:
        """Remember the container's limits."""
        self._limits[container_id] = limits
        self._sessions.setdefault(container_id, {})

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        """The container's new limits, enforced from the next poll."""
        self._limits[container_id] = limits

    def isolate(self, container_id: str, pid: int) -> None:
        """The process ``pid`` leads a new session of the container."""
        # The leader's start time (the guard against a reused pid) is taken from the first sweep that sees
        # it: reading /proc here would cost every launch a file open on the agent's hot path.
        self._isolated_at[pid] = time.monotonic()
        self._sessions.setdefault(container_id, {})[pid] = None

    def _usage(self, container_id: str) -> SessionUsage:
        now = time.monotonic()
        if now - self._swept_at > SWEEP_REUSE_S:
            self._sweep, self._swept_at = sweep_proc(self._proc), now
        total = SessionUsage()
        sessions = self._sessions.get(container_id, {})
        for session in list(sessions):
            usage = self._owned(sessions, session)
            if usage is not None:
                total.pids += usage.pids
                total.user_ticks += usage.user_ticks
                total.system_ticks += usage.system_ticks
                total.rss_bytes += usage.rss_bytes
        self._max_rss[container_id] = max(self._max_rss.get(container_id, 0), total.rss_bytes)
        return total

    def _owned(self, sessions: dict[int, int | None], session: int) -> SessionUsage | None:
        """The kept sweep's usage of a container's session, unless the session id now names someone else's."""
        usage = self._sweep.get(session)
        if usage is None or self._swept_at <= self._isolated_at.get(session, float("-inf")):
            return None
        if sessions[session] is None:
            sessions[session] = usage.leader_start  # first sight of the leader: remember who it is
        return usage if usage.leader_start in (None, sessions[session]) else None

    def usage(self, container_id: str) -> Statistics:
        """CPU times and resident memory of the container's sessions."""
        usage = self._usage(container_id)
        return {
            "cpus_user_time_secs": usage.user_ticks / TICKS_PER_S,
            "cpus_system_time_secs": usage.system_ticks / TICKS_PER_S,
            "mem_rss_bytes": usage.rss_bytes,
            "processes": len(usage.pids),
        }

    def limitation(self, container_id: str) -> Limitation | None:
        """A memory limitation when the container's resident memory is above its limit."""
        limit = self._limits.get(container_id, ContainerLimits()).mem_bytes
        if not self._enforce_memory or limit is None:
            return None
        rss = self._usage(container_id).rss_bytes
        return memory_limitation(limit, self._max_rss[container_id]) if rss > limit else None

    def kill(self, container_id: str) -> bool:
        """SIGKILL every process of the container's sessions (a process that left its session escapes)."""
        # The launcher already killed each task's process group; this finds what left the group but not the
        # session, from the last poll's sweep (a full sweep per container would cost ~7 ms per task ended).
        sessions = self._sessions.get(container_id, {})
        for session in list(sessions):
            usage = self._owned(sessions, session)
            if usage is None:
                continue  # gone, or its id now names another task's session: never kill that
            for pid in usage.pids:
                still = sweep_proc(self._proc, only=pid).get(session)
                if still is not None and pid in still.pids:  # the pid was not reused meanwhile
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        return True

    def cleanup(self, container_id: str) -> None:
        """Forget the container."""
        for session in self._sessions.pop(container_id, {}):
            self._isolated_at.pop(session, None)
        self._limits.pop(container_id, None)
        self._max_rss.pop(container_id, None)
