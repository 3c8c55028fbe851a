"""A started (or adopted) process group, as the agent watches it: its leader's end, and signals to the group.

A child of the agent's is watched with a pidfd on the event loop; one the spawner started is told of by the
spawner (:mod:`spawner`); one an earlier agent started is watched by pid, its code read from the status file its
wrapper recorded (:func:`adopt_process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import final

# A wrapper that records the exit status (and an init, which cannot die of its own signal) gives signal N as
# 128 + N, as a shell does.
SIGNAL_EXIT_BASE = 128
# What an adopted process that left no status behind is taken to have died of (a SIGKILL of its group).
UNKNOWN_EXIT_CODE = -signal.SIGKILL


@final
class Process:
    """A started (or adopted) process group: its leader's exit, and signals to the whole group."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop, reap: Callable[[], int] | None) -> None:
        """Watch ``pid`` with a pidfd, ``reap`` giving its code once it has exited; without ``reap``, whoever
        started it (the spawner) reports its end."""
        self.pid = pid
        self._loop = loop
        self._exited: asyncio.Future[int] = loop.create_future()
        self._reported = reap is None
        if reap is not None:
            self._watch(reap)

    def _watch(self, reap: Callable[[], int]) -> None:
        self._reap = reap
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    @property
    def returncode(self) -> int | None:
        """None while running; the exit code, or ``-signal`` when a signal ended it."""
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """Wait for the leader to exit; the return code as :attr:`returncode`."""
        return await asyncio.shield(self._exited)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of the group (no error when it is already gone)."""
        if not signal_group(self.pid, sig) and self._reported and self.returncode is None:
            # The spawner tells of a child before it has made its session (so its group): it is alone yet. Its
            # pid is held until the agent has noted its end, so this reaches no one else.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    async def kill(self, grace_s: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace_s``; the leader's return code."""
        if self.returncode is not None:
            return self.returncode
        self.signal_group(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), timeout=grace_s)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            return await self.wait()

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        # A child leader is a zombie now, so its pid (the group id) is still ours: clear the rest of the group.
        self.signal_group(signal.SIGKILL)
        self.ended(self._reap())

    def ended(self, code: int) -> None:
        """The process has ended with ``code`` (as its starter reports it)."""
        if not self._exited.done():
            self._exited.set_result(code)

    def watch_by_pid(self, reap: Callable[[], int]) -> None:
        """Whoever reported this process's end cannot any more: watch it as an adopted one (``reap``: its code)."""
        self._reported = False  # nobody holds its pid for us now: no signal to it alone (see signal_group)
        try:
            self._watch(reap)
        except (ProcessLookupError, PermissionError):
            self.ended(reap())


def signal_group(leader: int, sig: int) -> bool:
    """Send ``sig`` to every process of ``leader``'s group; whether there was one (no error when it is gone)."""
    try:
        os.killpg(leader, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def adopt_process(pid: int, exit_status_path: str | None, loop: asyncio.AbstractEventLoop) -> Process | None:
    """Watch a process an earlier agent started (it is not our child); None when it is gone.

    Its exit code is read from the wrapper's status file once it exits.
    """
    try:
        return Process(pid, loop, lambda: read_exit_status(exit_status_path))
    except (ProcessLookupError, PermissionError):
        return None


def read_exit_status(exit_status_path: str | None) -> int:
    """The code the exit-status wrapper recorded (``-signal`` for a signal), else :data:`UNKNOWN_EXIT_CODE`."""
    if exit_status_path is None:
        return UNKNOWN_EXIT_CODE
    try:
        with open(exit_status_path, "rb") as handle:
            return unwrap_code(int(handle.read().strip() or b"x"))
    except (OSError, ValueError):
        return UNKNOWN_EXIT_CODE


def unwrap_code(code: int) -> int:
    # sh reports a command killed by signal N as 128 + N; give it back the -N a direct child would have.
    if SIGNAL_EXIT_BASE < code < SIGNAL_EXIT_BASE + signal.NSIG:
        return -(code - SIGNAL_EXIT_BASE)
    return code
