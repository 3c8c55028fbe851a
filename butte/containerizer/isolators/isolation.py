"""A container's isolation: the agent's isolators run together, as Mesos's containerizer runs its isolators.

A task's first process joins its cgroups itself, before it execs the command, so nothing it starts can
escape, and no Python runs in the child (``preexec_fn`` would force a full fork, ~3x slower). It starts as
``butte-isolate`` (isolators/helper: join, then the pid namespace, then exec), or where that cannot be built
as ``/bin/sh -c 'echo $$ > .../cgroup.procs; exec "$@"'`` followed by ``unshare``. Measured on this 2-core
host (300 ``/bin/true``, 4 spawn threads; cpu is agent + children per launch): direct 1.04 ms; cgroups by the
sh prelude 3.07 ms, by moving the spawning thread into the cgroup first 2.48 ms (v1 only), by butte-isolate
2.62 ms; cgroups + pid namespace by sh + unshare 4.87 ms, by butte-isolate 3.14 ms.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import final

from butte.containerizer.isolators.base import ContainerLimits, Isolator, Limitation, Statistics
from butte.containerizer.isolators.oom_events import EventSource

log = logging.getLogger(__name__)

# The prelude: "$@" is the cgroup.procs files, "--", then the command. A refused join fails the task.
JOIN_SCRIPT = 'p=$$; while [ "$1" != -- ]; do echo $p > "$1" || exit 125; shift; done; shift; exec "$@"'


@final
class Isolation:
    """Every isolator the agent runs, called in order for each container."""

    def __init__(
        self, isolators: Sequence[Isolator] = (), names: Sequence[str] = (), helper: str | None = None
    ) -> None:
        self.isolators = tuple(isolators)
        self.names = tuple(names)
        self.helper = helper  # butte-isolate's path, when built (isolators.helper); else sh + unshare
        # Whether tasks start under a prelude at all (cgroups to join, a namespace, a wrapper): asked per task.
        self.has_prelude = any(
            isolator.join_paths("-") or isolator.makes_pid_namespace or isolator.wrapper()
            for isolator in self.isolators
        )
        self._limits: dict[str, ContainerLimits] = {}
        # Limits an update brought before the container was prepared (an executor still launching).
        self._pending: dict[str, ContainerLimits] = {}
        self._lock = threading.Lock()  # prepare (spawn threads) against update (the update thread)
        self._helper_watched: set[str] = set()  # containers butte-isolate set up (expect)

    def describe(self) -> str:
        """What the agent isolates with, for its start-up log line."""
        return ",".join(self.names) or "none"

    def prelude(self, container_id: str, switch_to: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The argv a task's command runs under, to land in its cgroups and namespaces.

        ``switch_to`` (a ``setpriv`` argv) comes last: joining cgroups and making namespaces need root.
        """
        joins = tuple(path for isolator in self.isolators for path in isolator.join_paths(container_id))
        pid_namespace = any(isolator.makes_pid_namespace for isolator in self.isolators)
        if self.helper is not None and (joins or pid_namespace):
            return (self.helper, *joins, *(["--pidns"] if pid_namespace else []), "--", *switch_to)
        wrappers = (*(part for isolator in self.isolators for part in isolator.wrapper()), *switch_to)
        if not joins:
            return wrappers
        return ("/bin/sh", "-c", JOIN_SCRIPT, "butte-isolate", *joins, "--", *wrappers)  # $0 names the script

    def helper_prelude(
        self, container_id: str, limits: ContainerLimits, switch_to: tuple[str, ...] = ()
    ) -> HelperLaunch | None:
        """The prelude of a container's only process when butte-isolate can set the whole container up, watch
        it for OOMs and take it down itself; None when it cannot (:meth:`helper_can_set_up`).

        The agent then does no cgroup work of its own for the container: no thread hop before the spawn to make
        and limit the cgroups, none after the exit to remove them, and none of the GIL hand-offs that each of
        those blocking calls costs while the event loop is busy. Measured on this 2-core VM (bench/
        launch_isolation): docs/decisions.md. Call :meth:`expect` in place of :meth:`prepare` for it.
        """
        helper = self.helper
        if helper is None or not self.helper_can_set_up():
            return None
        helping = (isolator for isolator in self.isolators if isolator.helps)
        args = tuple(part for isolator in helping for part in isolator.helper_setup(container_id, limits))
        pid_namespace = any(isolator.makes_pid_namespace for isolator in self.isolators)
        return HelperLaunch(
            prelude=(helper, *args, *(["--pidns"] if pid_namespace else []), "--remove", "--", *switch_to),
            pid_namespace=pid_namespace,
        )

    def helper_can_set_up(self) -> bool:
        """Whether :meth:`helper_prelude` can set containers up: a helper, and every isolator either one whose
        part the helper can do or the pid namespace (e.g. posix's bookkeeping, or cgroup v2, are the agent's)."""
        return (
            self.helper is not None
            and any(isolator.helps for isolator in self.isolators)
            and all(isolator.helps or isolator.makes_pid_namespace for isolator in self.isolators)
        )

    def expect(self, container_id: str, limits: ContainerLimits) -> None:
        """Know a container whose process starts under :meth:`helper_prelude` (which sets it up, and watches it
        for OOMs itself: :meth:`limitations` leaves it out)."""
        self._limits[container_id] = limits
        self._helper_watched.add(container_id)

    def prepare(self, container_id: str, limits: ContainerLimits) -> bool:
        """Set the container up before its first process starts (blocking; a task group calls it per task).

        Returns whether this call made the container known (False: it was already, or another thread got there
        first; each of a group's tasks prepares, and two spawn threads may race).

        Raises:
            OSError: an isolator could not set the container up.
        """
        if container_id in self._limits:
            return False
        try:
            for isolator in self.isolators:
                isolator.prepare(container_id, limits)
        except OSError:
            self._limits[container_id] = limits
            self.destroy(container_id)  # undo what the isolators before the failing one did
            raise
        with self._lock:
            if container_id in self._limits:
                return False
            self._limits[container_id] = limits
            pending = self._pending.pop(container_id, None)
        if pending is not None:
            self.update(container_id, pending)
        return True

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        """The container's resources changed (blocking); before it is prepared, its preparation applies them.

        Raises:
            OSError: an isolator could not apply the new limits.
        """
        with self._lock:
            if container_id not in self._limits:
                self._pending[container_id] = limits
                return
            self._limits[container_id] = limits
        for isolator in self.isolators:
            isolator.update(container_id, limits)

    def oom_events(self, container_id: str) -> list[EventSource]:
        """Where the kernel signals an OOM in the prepared container (blocking; refusals are logged)."""
        sources: list[EventSource] = []
        for isolator in self.isolators:
            try:
                source = isolator.oom_events(container_id)
            except OSError:
                log.warning("No OOM events for container %s (%s); polling for them", container_id, isolator.name)
                continue
            if source is not None:
                sources.append(source)
        return sources

    def adopt(self, container_id: str, limits: ContainerLimits) -> None:
        """Take back a container whose processes already run (agent recovery); never kills, logs errors."""
        for isolator in self.isolators:
            try:
                isolator.prepare(container_id, limits)  # idempotent: the cgroups are found where they were
            except OSError:
                log.exception("Failed to recover container %s (%s)", container_id, isolator.name)
        self._limits[container_id] = limits

    def started(self, container_id: str, pid: int) -> None:
        """One of the container's processes has started (as the leader of a new session)."""
        for isolator in self.isolators:
            isolator.isolate(container_id, pid)

    def usage(self, container_id: str) -> Statistics:
        """Mesos's ``ResourceStatistics`` of the container: limits, then what each isolator measures."""
        limits = self._limits.get(container_id, ContainerLimits())
        stats: Statistics = {"timestamp": time.time()}
        if limits.cpus is not None:
            stats["cpus_limit"] = limits.cpus
        if limits.mem_bytes is not None:
            stats["mem_limit_bytes"] = limits.mem_bytes
        for isolator in self.isolators:
            stats.update(isolator.usage(container_id))
        return stats

    def limitation(self, container_id: str) -> Limitation | None:
        """The first limit the container has gone past, if any."""
        for isolator in self.isolators:
            found = isolator.limitation(container_id)
            if found is not None:
                return found
        return None

    def limitations(self) -> list[tuple[str, Limitation]]:
        """Every container past a limit right now (the agent polls this; one that cannot be read is skipped)."""
        found: list[tuple[str, Limitation]] = []
        for container_id in list(self._limits):
            if container_id in self._helper_watched:
                continue  # its helper ends it on an OOM kill, and the runner reads the limitation at its exit
            try:
                limitation = self.limitation(container_id)
            except OSError:  # destroyed meanwhile, or its cgroup refused a read: the next poll looks again
                log.debug("Could not read the limits of container %s", container_id, exc_info=True)
                continue
            if limitation is not None:
                found.append((container_id, limitation))
        return found

    def containers(self) -> list[str]:
        """The containers set up and not yet destroyed."""
        return list(self._limits)

    def forget_if_removed(self, container_id: str) -> bool:
        """Forget a container whose helper took down (or recycled) what it set up (a ``stat`` or two, fine on
        the event loop); False when something is left for :meth:`destroy` (the helper was killed, its task was
        OOM-killed, or a process outlived the task)."""
        settled = [isolator.settle_after_helper(container_id) for isolator in self.isolators if isolator.helps]
        if not all(settled):  # every isolator settles (a list, not all() over a generator that stops early)
            return False
        self._pending.pop(container_id, None)
        self._limits.pop(container_id, None)
        self._helper_watched.discard(container_id)
        return True

    def close(self) -> None:
        """The agent is stopping: let each isolator drop what it keeps for containers to come (blocking)."""
        for isolator in self.isolators:
            isolator.close()

    def destroy(self, container_id: str) -> None:
        """Kill whatever is left in the container and undo its isolation (blocking; errors are logged)."""
        self._pending.pop(container_id, None)
        self._helper_watched.discard(container_id)
        if self._limits.pop(container_id, None) is None:
            return
        for isolator in self.isolators:
            try:
                isolator.destroy(container_id)
            except OSError:
                log.exception("Failed to clean up container %s (%s)", container_id, isolator.name)


@final
@dataclass(frozen=True, slots=True)
class HelperLaunch:
    """A container's only process as butte-isolate starts it when it sets the container up itself."""

    prelude: tuple[str, ...]
    pid_namespace: bool  # started as the init of a new pid namespace, where the launcher can make one


@final
@dataclass(frozen=True, slots=True)
class ContainerHooks:
    """What a task's runner tells the isolation of its container, and asks it."""

    isolation: Isolation
    container_id: str

    def started(self, pid: int) -> None:
        """The task's process started as ``pid``."""
        self.isolation.started(self.container_id, pid)

    def limitation(self) -> Limitation | None:
        """A limit the container has gone past, if any."""
        return self.isolation.limitation(self.container_id)
