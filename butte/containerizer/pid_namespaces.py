"""Starting a process as the init (pid 1) of a new pid namespace, from the thread that spawns it.

A pid namespace made by the process that will run in it (``unshare(CLONE_NEWPID)``) only holds that
process's children: its init must be forked, one process more per task. Made by the parent instead, the
parent's next child is the init itself. The kernel keeps "the namespace for my children" per thread, so a
spawn thread can make one just before it spawns and go back to its own right after, while the agent's other
threads spawn as usual. butte-isolate, started as pid 1, is then the namespace's init itself (isolators/helper).

The calls go through :class:`ctypes.PyDLL`, which keeps the GIL: each takes microseconds, and a release would
hand the GIL to the busy event loop and wait to get it back, which costs more than the call.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from typing import final

log = logging.getLogger(__name__)

CLONE_NEWPID = 0x20000000  # <linux/sched.h>


@final
class PidNamespaces:
    """Makes a new pid namespace for the calling thread's next child, and takes the thread back to its own."""

    def __init__(self) -> None:
        self._libc: ctypes.PyDLL | None = None
        self._own: int | None = None  # a descriptor of this process's pid namespace, to go back to
        self._usable = True
        self._lock = threading.Lock()  # spawn threads open it on first use

    def _open(self) -> bool:
        with self._lock:
            return self._own is not None or self._open_once()

    def _open_once(self) -> bool:
        try:
            libc = ctypes.PyDLL(None, use_errno=True)
            libc.unshare.argtypes = [ctypes.c_int]
            libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, AttributeError) as exc:
            log.info("Pid namespaces are made by butte-isolate itself: %s", exc)
            self._usable = False
            return False
        self._libc, self._own = libc, own
        return True

    @contextlib.contextmanager
    def for_next_child(self) -> Iterator[bool]:
        """While open, the calling thread's children start in a new pid namespace, the first one as its init;
        yields whether they do (not when the kernel refuses: without CAP_SYS_ADMIN, say). Spawn exactly one.

        Raises:
            OSError: the thread could not go back to its own namespace (its later children would land in the
                new one): the caller must not spawn on this thread again.
        """
        if not self._usable or not self._open():
            yield False
            return
        assert self._libc is not None and self._own is not None
        if self._libc.unshare(CLONE_NEWPID) != 0:
            error = ctypes.get_errno()
            log.info("Pid namespaces are made by butte-isolate itself: unshare: %s", os.strerror(error))
            self._usable = False
            yield False
            return
        try:
            yield True
        finally:
            if self._libc.setns(self._own, CLONE_NEWPID) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"cannot go back to the agent's pid namespace: {os.strerror(error)}")

    def close(self) -> None:
        """Close the descriptor of the process's own namespace."""
        if self._own is not None:
            os.close(self._own)
            self._own = None
