"""The isolator hook: what every isolator may do to a container, with no-op defaults (as Mesos's isolators).

A container is named by its id and carries the limits its resources ask for. Every method is blocking and
cheap (a few file operations); the agent calls them on a worker thread, never on its event loop.
Statistics use the names of Mesos's ``ResourceStatistics``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from butte.containerizer.isolators.oom_events import EventSource

# Mesos's limitation reason for a container that used more memory than it was given.
MEMORY_LIMITATION = "REASON_CONTAINER_LIMITATION_MEMORY"
MB = 1024 * 1024


@final
@dataclass(frozen=True, slots=True)
class ContainerLimits:
    """What a container's resources allow it: cpus (fractional) and memory in MB (None: no limit)."""

    cpus: float | None = None
    mem_mb: float | None = None

    @property
    def mem_bytes(self) -> int | None:
        """The memory limit in bytes, or None."""
        return None if self.mem_mb is None else int(self.mem_mb * MB)


@final
@dataclass(frozen=True, slots=True)
class Limitation:
    """A container went past a limit: Mesos's reason and the message the task's update carries."""

    reason: str
    message: str


def memory_limitation(limit_bytes: int | None, max_used_bytes: int | None) -> Limitation:
    """Mesos's wording of a memory limitation."""
    requested = f"{limit_bytes // MB}MB" if limit_bytes is not None else "unlimited"
    used = f"{max_used_bytes // MB}MB" if max_used_bytes is not None else "unknown"
    return Limitation(MEMORY_LIMITATION, f"Memory limit exceeded: Requested: {requested} Maximum Used: {used}")


Statistics = dict[str, float | int]


class Isolator:
    """One isolator; each hook does nothing unless overridden."""

    name = "none"
    makes_pid_namespace = False  # the helper does this one itself, without the wrapper
    helps = False  # whether butte-isolate can set this isolator's part of a container up (:meth:`helper_setup`)

    def prepare(self, container_id: str, limits: ContainerLimits) -> None:
        """Set up the container's isolation before its first process starts (e.g. create and limit cgroups)."""

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        """The container's resources changed (a task added to its executor), as Mesos's ``update()``."""

    def oom_events(self, container_id: str) -> EventSource | None:
        """Where the kernel signals an OOM in the prepared container; None: the agent polls for it."""
        return None

    def join_paths(self, container_id: str) -> tuple[str, ...]:
        """Files the task's first process writes its own pid to before it execs (``cgroup.procs``)."""
        return ()

    def wrapper(self) -> tuple[str, ...]:
        """An argv prefix the task runs under (e.g. ``unshare`` for a pid namespace)."""
        return ()

    def helper_setup(self, container_id: str, limits: ContainerLimits) -> tuple[str, ...]:
        """What ``butte-isolate`` is to do for this isolator when it sets the container up and takes it down
        itself (:meth:`Isolation.helper_prelude`); asked only when :attr:`helps`."""
        return ()

    def removed_by_helper(self, container_id: str) -> bool:
        """Whether the helper took down everything :meth:`helper_setup` had it set up."""
        return False

    def settle_after_helper(self, container_id: str) -> bool:
        """The container's helper has ended: keep what it recycled; whether nothing is left to destroy."""
        return self.removed_by_helper(container_id)

    def isolate(self, container_id: str, pid: int) -> None:
        """The container's first process has started as ``pid``."""

    def usage(self, container_id: str) -> Statistics:
        """Resource statistics this isolator measures, by Mesos's ``ResourceStatistics`` names."""
        return {}

    def limitation(self, container_id: str) -> Limitation | None:
        """A limit the container has gone past, if any."""
        return None

    def kill(self, container_id: str) -> bool:
        """SIGKILL every process of the container; False when this isolator cannot find them."""
        return False

    def cleanup(self, container_id: str) -> None:
        """Undo :meth:`prepare` once every process of the container has ended."""

    def close(self) -> None:
        """The agent is stopping: drop what is kept for containers to come (blocking)."""

    def destroy(self, container_id: str) -> None:
        """Kill whatever is left of the container, then undo its isolation (blocking).

        Raises:
            OSError: the isolation could not be undone.
        """
        self.kill(container_id)
        self.cleanup(container_id)


def read_text(path: str) -> str | None:
    """A small file's content, or None when it is not there (a cgroup being removed answers ENODEV)."""
    try:
        with open(path) as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise


def read_int(path: str) -> int | None:
    """A file holding one integer (or ``max``: None)."""
    text = read_text(path)
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def read_keyed(path: str) -> dict[str, int]:
    """A cgroup ``key value`` file (``memory.stat``, ``cpu.stat``, ``memory.events``) as a dict."""
    values: dict[str, int] = {}
    for line in (read_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def write_text(path: str, value: str) -> None:
    """Write a control file (cgroupfs wants one write per value).

    Raises:
        OSError: the kernel refused the value.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
