"""Used container cgroups kept for the next container (cgroup v1), so that a launch renames one into place.

Making a cgroup and removing it is most of what isolation costs the kernel: each mkdir builds every control
file of the controller, each rmdir tears them down and leaves the css to be freed by a kernel worker, both
under the cgroup mutex. Measured on this 2-core VM (2 spawners, 4 in flight, three v1 hierarchies): a task
through butte-isolate in a pid namespace and fresh cgroups cost the machine 1.8 ms more than ``/bin/true``
spawned directly, in recycled cgroups 1.1 ms more.

butte-isolate does the renames (``--reuse``, ``--recycle``: isolators/helper). A container's cgroups are
recycled only when nothing says the next container would see the last one's traces: no OOM kill was counted
(the count cannot be reset), no more than :data:`RECYCLE_MAX_CHARGED_BYTES` is still charged to the memory
cgroup, and the counters that can be reset are (cpu time, peak memory). Counters that cannot be reset (the
CFS throttling counts of ``cpu.stat``) keep an agent with ``--cgroups_enable_cfs`` from pooling at all.
An idle cgroup is named ``idle-<id of the container that used it last>`` beside the live ones.

The pool also remembers the limits an idle cgroup still holds (the last container's ``cpu.shares`` and
``memory.limit_in_bytes``), so that the next container writes only those that differ, and puts back to the
kernel's default a limit the next container does not set (a task without a memory resource would otherwise
inherit the last one's limit). In a burst of alike tasks that is two control-file writes fewer per task, ~0.1
ms of machine CPU (butte-isolate alone, 3 v1 hierarchies, pid namespace, recycling, 2 spawners: 1.68 ms per
run with the writes, 1.57 without).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import final

log = logging.getLogger(__name__)

# Idle cgroups kept at most, promises included: enough that a burst of launches as large as an agent usually
# sees (bench/launch_isolation: 500 per agent) gives every container back instead of removing it, and the next
# burst makes none. An idle container's cgroups hold ~50 KB of kernel memory on three v1 hierarchies (slab
# and per-cpu, measured here for 1,000): 25 MB for a full pool, freed when the agent stops. With 64, a burst
# past it removed the rest one by one: 280 against 329 tasks/s in the same run.
POOL_SIZE = 512
IDLE_PREFIX = "idle-"
# What may still be charged to a memory cgroup that is recycled: a little left in files the task wrote, plus
# what only looks charged for a moment (the kernel pre-charges up to 64 pages per cpu to a cgroup, and frees a
# finished task's kernel objects after an RCU grace period: 0.3-0.9 MB after a /bin/true here, 0.2 MB a
# second later).
RECYCLE_MAX_CHARGED_BYTES = (4 << 20) + 64 * 4096 * (os.cpu_count() or 1)


def idle_name(container_id: str) -> str:
    """The name a container's cgroups are recycled under."""
    return f"{IDLE_PREFIX}{container_id}"


@final
class CgroupPool:
    """Idle cgroups of one agent, and the containers that will give theirs back (spawn threads take and
    promise, the event loop settles).

    ``bases``: where the containers' cgroups are, in the order butte-isolate makes them (the first one goes
    last). ``resets``: (base, control file, value) written before a container's cgroups are recycled.
    ``memory_base``: whose ``memory.usage_in_bytes`` must be small for them to be.
    """

    def __init__(
        self,
        bases: Sequence[str],
        resets: Sequence[tuple[str, str, str]],
        memory_base: str | None,
        size: int = POOL_SIZE,
    ) -> None:
        self._bases = tuple(bases)
        self._resets = tuple(resets)
        self._memory_base = memory_base
        self._size = size
        self._idle: list[str] = []
        self._lent: dict[str, str] = {}  # container -> the idle name it was handed
        self._recycling: dict[str, dict[str, str]] = {}  # containers whose helper was told to recycle: limits
        self._limits: dict[str, dict[str, str]] = {}  # idle name -> the limits its cgroups hold (control: value)
        self._lock = threading.Lock()

    def idle(self) -> list[str]:
        """The names of the idle cgroups."""
        with self._lock:
            return list(self._idle)

    def setup_args(self, container_id: str) -> list[str]:
        """butte-isolate's arguments to take over an idle cgroup for the container (none idle: none)."""
        with self._lock:
            if not self._idle:
                return []
            name = self._idle.pop()
            self._lent[container_id] = name
        return ["--reuse", name]

    def limits_held(self, container_id: str) -> dict[str, str]:
        """The limits the idle cgroups lent to the container hold (control file: value); none when it got none."""
        with self._lock:
            name = self._lent.get(container_id)
            return dict(self._limits.get(name, {})) if name is not None else {}

    def recycle_args(self, container_id: str, limits: Mapping[str, str] | None = None) -> list[str]:
        """butte-isolate's arguments to recycle the container's cgroups when it ends; none when the pool and
        the containers that will give theirs back fill it already (the helper then removes them itself).
        ``limits``: what its cgroups will hold then (control file: value), for :meth:`limits_held`.

        A burst is spawned faster than its tasks end (bench/launch_isolation: 500 tasks per agent, a few dozen
        of them found an idle cgroup), so its containers make new cgroups, but give them back for the next; the
        containers past the pool's size are removed by their helpers, off the agent, as without a pool.
        """
        with self._lock:
            if len(self._idle) + len(self._recycling) >= self._size:
                return []
            self._recycling[container_id] = dict(limits or {})
        args = ["--recycle", idle_name(container_id)]
        for base, control, value in self._resets:
            args += ["--reset", f"{base}/{container_id}/{control}", value]
        if self._memory_base is not None:
            usage = f"{self._memory_base}/{container_id}/memory.usage_in_bytes"
            args += ["--recycle-below", usage, str(RECYCLE_MAX_CHARGED_BYTES)]
        return args

    def settle(self, container_id: str) -> bool:
        """The container's helper has ended: take its recycled cgroups into the pool (and back an idle one it
        never took over). A ``stat`` or two. False when something is left to destroy: its cgroups are still
        there (the helper was killed, the task was OOM-killed or left a process behind), or only some were
        recycled."""
        first = self._bases[0]
        with self._lock:
            lent = self._lent.pop(container_id, None)
            limits = self._recycling.pop(container_id, None)  # None: its helper was not told to recycle
        if lent is not None and os.path.isdir(f"{first}/{lent}"):
            self._give_back(lent)  # its launch never got as far as the helper
        elif lent is not None:
            with self._lock:  # taken over: what it held is the container's now
                self._limits.pop(lent, None)
        if os.path.isdir(f"{first}/{container_id}"):
            return False
        name = idle_name(container_id)
        if limits is not None and os.path.isdir(f"{first}/{name}"):
            self._give_back(name, limits)
            return True
        # Removed, not recycled: the helper's first step would have left a trace in the last base.
        return limits is None or not os.path.isdir(f"{self._bases[-1]}/{name}")

    def _give_back(self, name: str, limits: dict[str, str] | None = None) -> None:
        """Keep an idle cgroup, with the limits it holds when given (or remove it, should the pool be full: the
        promises bound it)."""
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(name)
                if limits is not None:
                    self._limits[name] = limits
                return
            self._limits.pop(name, None)
        self._remove(name)

    def _remove(self, name: str) -> None:
        for base in reversed(self._bases):
            try:
                os.rmdir(f"{base}/{name}")
            except FileNotFoundError:
                continue
            except OSError:
                log.debug("Could not remove idle cgroup %s/%s", base, name, exc_info=True)

    def close(self) -> None:
        """Remove every idle cgroup (the agent is stopping)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._limits.clear()
        for name in idle:
            self._remove(name)

    def sweep(self) -> None:
        """Remove idle cgroups a previous run of the agent left (this run does not know what they held)."""
        for base in self._bases:
            with contextlib.suppress(OSError):
                for entry in os.scandir(base):
                    if entry.name.startswith(IDLE_PREFIX) and entry.is_dir():
                        try:
                            os.rmdir(entry.path)
                        except OSError:
                            log.debug("Could not remove idle cgroup %s", entry.path, exc_info=True)
