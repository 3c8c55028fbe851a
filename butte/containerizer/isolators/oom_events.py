"""Kernel notifications of an OOM in a container, so a memory limitation is seen at once rather than at a poll.

cgroup v1: an eventfd registered for ``memory.oom_control`` through ``cgroup.event_control`` becomes readable
when the cgroup hits OOM (Mesos's memory isolator listens the same way); one epoll instance holds them all.
cgroup v2: ``memory.events`` raises a "file modified" event whenever one of its counters moves, so one inotify
instance watches every container's file (one instance, not one per container: ``fs.inotify.max_user_instances``
is often only 128).

A source is a file descriptor the agent's event loop reads; :meth:`EventSource.fired` names the containers
whose events came in. An event only says "look now": the caller confirms with the isolator's ``limitation``
(a v1 event precedes the kill it leads to, and a v2 modification may be a ``high`` or ``max`` count).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import threading
from typing import Protocol, final

from butte.containerizer.isolators.base import write_text

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_READ_BYTES = 64 * 1024


class EventSource(Protocol):
    """A descriptor the event loop watches for containers' OOM events."""

    def fileno(self) -> int:
        """The descriptor that becomes readable on an event."""
        ...

    def fired(self) -> list[str]:
        """Consume what is readable; the containers it concerns (none when nothing was pending)."""
        ...

    def unwatch(self, container_id: str) -> bool:
        """Stop watching a container; True when the source watches nothing now (stop reading, then close it)."""
        ...

    def close(self) -> None:
        """Close the descriptor."""
        ...


@final
class OomEventFds:
    """cgroup v1: an eventfd per container, which the kernel signals when its memory cgroup hits OOM, all held
    in one epoll instance: the event loop reads that one descriptor, and a container is watched from the spawn
    thread that prepares it, without a hop to the loop.

    A registration lives as long as its eventfd (or its cgroup): closing the eventfd unregisters it, and takes
    it out of the epoll set with it. The kernel also signals the eventfd when the cgroup goes; a container is
    unwatched before its cgroup is removed, so that never reaches :meth:`fired`.
    """

    def __init__(self) -> None:
        """Make the epoll instance.

        Raises:
            OSError: the kernel refused one.
        """
        self._epoll = select.epoll()
        self._lock = threading.Lock()  # watched on spawn threads, fired and unwatched on the event loop
        self._by_fd: dict[int, str] = {}
        self._by_container: dict[str, int] = {}

    def fileno(self) -> int:
        """The epoll descriptor: readable when any container's eventfd is."""
        return self._epoll.fileno()

    def watch(self, container_id: str, memory_dir: str) -> None:
        """Register for the OOM notifications of the container's cgroup in ``memory_dir``.

        Raises:
            OSError: the cgroup has no ``memory.oom_control`` or refused the registration.
        """
        event = self.add(container_id)
        try:
            control = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                write_text(os.path.join(memory_dir, "cgroup.event_control"), f"{event} {control}")
            finally:
                os.close(control)  # the kernel holds what it needs from it; only the eventfd must stay open
        except OSError:
            self.unwatch(container_id)
            raise

    def add(self, container_id: str) -> int:
        """A new eventfd for the container, in the set; registering it with the cgroup is the caller's part
        (butte-isolate does it when it makes the cgroup: Isolation.helper_prelude).

        Raises:
            OSError: no eventfd could be made.
        """
        event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        with self._lock:
            try:
                self._epoll.register(event, select.EPOLLIN)
            except OSError:
                os.close(event)
                raise
            self._by_fd[event] = container_id
            self._by_container[container_id] = event
        return event

    def fired(self) -> list[str]:
        """The containers whose eventfd was signalled since the last call (reading resets each)."""
        found: list[str] = []
        with self._lock:
            for event, _ in self._epoll.poll(0):
                container_id = self._by_fd.get(event)
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(event)
                    if container_id is not None:
                        found.append(container_id)
        return found

    def unwatch(self, container_id: str) -> bool:
        """Close the container's eventfd (ending its registration); the epoll stays for containers to come."""
        with self._lock:
            event = self._by_container.pop(container_id, None)
            if event is None:
                return False
            del self._by_fd[event]
            # Out of the set first: a child between its fork and its exec may still hold the eventfd open,
            # which would keep it in the set, readable (the cgroup's removal signals it) and nameless.
            self._epoll.unregister(event)
            os.close(event)  # under the lock: a watch on another thread must not get this number back meanwhile
        return False

    def watched(self) -> list[str]:
        """The containers watched now."""
        with self._lock:
            return list(self._by_container)

    def close(self) -> None:
        """Close every eventfd and the epoll instance."""
        with self._lock:
            for event in self._by_fd:
                os.close(event)
            self._by_fd.clear()
            self._by_container.clear()
            self._epoll.close()


class _Libc(Protocol):
    def inotify_init1(self, flags: int) -> int: ...
    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int: ...
    def inotify_rm_watch(self, fd: int, wd: int) -> int: ...


def _libc() -> _Libc:
    # The standard library has no inotify; the C library's three calls are all that is needed.
    return ctypes.CDLL(None, use_errno=True)  # type: ignore[return-value]


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


@final
class MemoryEventsWatch:
    """cgroup v2: one inotify instance watching the ``memory.events`` file of every container.

    Watches are added on spawn threads and read on the event loop, hence the lock.
    """

    def __init__(self) -> None:
        """Make the inotify instance.

        Raises:
            OSError: the kernel refused one (out of instances).
        """
        self._libc = _libc()
        self._fd = _check(self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self._lock = threading.Lock()
        self._by_wd: dict[int, str] = {}
        self._by_container: dict[str, int] = {}

    def fileno(self) -> int:
        """The inotify descriptor."""
        return self._fd

    def watch(self, container_id: str, events_path: str) -> None:
        """Watch a container's ``memory.events``.

        Raises:
            OSError: the file is not there (no memory controller) or the kernel refused the watch.
        """
        wd = _check(self._libc.inotify_add_watch(self._fd, os.fsencode(events_path), IN_MODIFY), events_path)
        with self._lock:
            self._by_wd[wd] = container_id
            self._by_container[container_id] = wd

    def fired(self) -> list[str]:
        """Every container whose file changed since the last call, once each, in order of first change."""
        found: dict[str, None] = {}
        while True:
            try:
                data = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                break
            for wd, mask in _parse_events(data):
                with self._lock:
                    container_id = self._by_wd.get(wd)
                    if mask & IN_IGNORED:  # the file went with its cgroup: the kernel dropped the watch
                        self._forget(wd)
                if container_id is not None and mask & IN_MODIFY:
                    found[container_id] = None
        return list(found)

    def unwatch(self, container_id: str) -> bool:
        """Drop a container's watch; the instance stays for containers to come (False: keep reading it)."""
        with self._lock:
            wd = self._by_container.get(container_id)
            if wd is None:
                return False
            self._forget(wd)
        with contextlib.suppress(OSError):
            # EINVAL when the cgroup was removed first: its watch is already gone.
            _check(self._libc.inotify_rm_watch(self._fd, wd), "inotify_rm_watch")
        return False

    def watched(self) -> list[str]:
        """The containers watched now."""
        with self._lock:
            return list(self._by_container)

    def _forget(self, wd: int) -> None:
        container_id = self._by_wd.pop(wd, None)
        if container_id is not None and self._by_container.get(container_id) == wd:
            del self._by_container[container_id]

    def close(self) -> None:
        """Close the instance (every watch with it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _parse_events(data: bytes) -> list[tuple[int, int]]:
    """The (watch descriptor, mask) of each ``struct inotify_event`` in one read."""
    events: list[tuple[int, int]] = []
    offset = 0
    while offset + _EVENT_HEADER.size <= len(data):
        wd, mask, _, name_len = _EVENT_HEADER.unpack_from(data, offset)
        events.append((wd, mask))
        offset += _EVENT_HEADER.size + name_len
    return events


def missing_file(exc: OSError) -> bool:
    """Whether registering failed only because the cgroup or its file is not there (no memory controller)."""
    return exc.errno in (errno.ENOENT, errno.ENOTDIR)
