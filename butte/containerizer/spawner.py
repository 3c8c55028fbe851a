"""The agent's side of ``butte-isolate --spawner``: one process of the agent's that starts every butte-isolate run.

Started through the agent, each isolated (or checkpointed) task costs the agent a ``subprocess.Popen`` (~0.25 ms
of its cpu, much of it holding the GIL the event loop wants) and the kernel an exec of the helper. The spawner,
a small C process started once, clones instead: the child is that helper run, without an exec, in the spawner's
own memory (no address space to copy and tear down: ~0.2-0.35 ms of machine cpu per run here), and the agent
only writes a request on a socket. The spawner watches its children with pidfds and says when one has ended;
its zombie (so its pid, the id of its process group) is kept until the agent has noted the end, so that a kill
never reaches a group whose id went to someone else (the same guarantee :class:`~launcher.Process` gives).

Measured on this 2-core VM (1,000 ``/bin/true`` runs through ``butte-isolate --pidns``, 20 at a time): machine
cpu 1.54-1.71 ms per task through Popen, 1.44-1.50 through the spawner; the caller's own cpu 0.26-0.29 against
0.10 ms.

The protocol is in ``isolators/helper/spawner.c``. Should the spawner die, its running children are handed back
to be watched as adopted processes are (their exit status from the file their helper records), and the next
launch starts a new spawner.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import final

from butte.core.errors import ButteError

log = logging.getLogger(__name__)

# What a request may carry: it goes as one datagram, within the socket's default send buffer (212,992 bytes on
# Linux) and the spawner's receive buffer (run_state.c: 256 KiB, 16,384 strings). Larger ones go through Popen.
MAX_REQUEST_BYTES = 200_000
MAX_REQUEST_STRINGS = 16_000
IN_PID_NAMESPACE = 1
# The answer to a launch: its pid, or why it failed; and a child's end, unasked.
STARTED, FAILED, EXITED = b"S", b"E", b"X"
# Told of a child's end: its exit code (-N for signal N), or None when the spawner was lost while it ran.
OnEnd = Callable[[int | None], None]


class SpawnerLost(ButteError):
    """The spawner ended before it answered (the launch may not have happened)."""


def encode_request(token: int, argv: Sequence[str], env: Mapping[str, str], cwd: str, flags: int) -> bytes | None:
    """The launch request's datagram; None when it is too large to go as one."""
    fields = ["L", str(token), str(flags), cwd, str(len(argv)), *argv, str(len(env))]
    fields.extend(f"{key}={value}" for key, value in env.items())
    if len(fields) > MAX_REQUEST_STRINGS:
        return None
    data = "\0".join(fields).encode() + b"\0"
    return data if len(data) <= MAX_REQUEST_BYTES else None


@final
class Spawner:
    """A running ``butte-isolate --spawner``, owned by one event loop."""

    def __init__(self, helper: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            theirs.set_inheritable(True)  # posix_spawn passes on what is inheritable: Popen closes it elsewhere
            # A session of its own: a ^C to the agent's terminal is not the spawner's to hear. posix_spawn, not
            # Popen: it is reaped by its pidfd whenever it ends, which may be long after the agent let it go (it
            # waits for its children), and a Popen dropped while its process runs is reported as a leak.
            self.pid = os.posix_spawn(
                helper,
                [helper, "--spawner", str(theirs.fileno())],
                os.environ,
                # Nothing of the agent's output: it may outlive the agent (while tasks run), and must not keep a
                # pipe from the agent's supervisor open.
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,  # it puts every signal back to its default itself, for its children's sake
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)
        ours.setblocking(False)
        self._socket = ours
        self._tokens = itertools.count(1)
        # Launches not answered yet: the answer's future, and whom to tell of the end (known before the answer is
        # awaited: the end may come in the same read as the start).
        self._starting: dict[int, tuple[asyncio.Future[int], OnEnd]] = {}
        self._running: dict[int, OnEnd] = {}
        self._outbox: deque[tuple[bytes, list[int]]] = deque()
        self._writing = False
        self.alive = True
        loop.add_reader(ours.fileno(), self._readable)

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        new_pid_namespace: bool,
        output: tuple[int, int],
        on_end: OnEnd,
    ) -> int | None:
        """Start butte-isolate's run ``argv`` (``argv[0]`` is the helper) with ``output`` as its stdout and stderr;
        its pid, or None when the request is too large to go as one datagram (nothing done: start it otherwise).
        The output descriptors are taken over (closed here) unless None is returned.

        Raises:
            OSError: the spawner could not start it (the errno it gave).
            SpawnerLost: the spawner ended first.
        """
        token = next(self._tokens)
        data = encode_request(token, argv, env, cwd, IN_PID_NAMESPACE if new_pid_namespace else 0)
        if data is None:
            return None
        if not self.alive:
            for fd in output:
                os.close(fd)
            raise SpawnerLost("the spawner has ended")
        answer: asyncio.Future[int] = self._loop.create_future()
        self._starting[token] = (answer, on_end)
        self._send(data, list(output))
        return await answer

    def _reap(self) -> None:
        """The spawner has exited: reap it (and take it as lost, if its socket did not say so first)."""
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        os.waitpid(self.pid, 0)
        if self.alive:
            self._readable(most=1 << 30)  # what it said before it went (ends it reported) is still to be read
        if self.alive:
            self._lose("it exited")

    def close(self) -> None:
        """Let the spawner go: it ends once its children have (they run on)."""
        if self.alive:
            self._lose("closed")

    # ---- the socket ----

    def _send(self, data: bytes, fds: list[int]) -> None:
        """Send now if nothing waits before it, else queue it (the descriptors stay open until it goes)."""
        self._outbox.append((data, fds))
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        while self._outbox and self.alive:
            data, fds = self._outbox[0]
            try:
                socket.send_fds(self._socket, [data], fds) if fds else self._socket.send(data)
            except BlockingIOError:
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self._socket.fileno(), self._flush)
                return
            except OSError as exc:
                self._lose(f"cannot send: {exc}")
                return
            self._outbox.popleft()
            for fd in fds:
                os.close(fd)
        if self._writing and self.alive:
            self._writing = False
            self._loop.remove_writer(self._socket.fileno())

    def _readable(self, most: int = 256) -> None:
        for _ in range(most):  # then let the loop serve others: it calls again while there is more
            try:
                message = self._socket.recv(128)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lose(f"cannot read: {exc}")
                return
            if not message:
                self._lose("it ended")
                return
            self._answer(message.split())

    def _answer(self, words: list[bytes]) -> None:
        kind, first, second = words[0], int(words[1]), int(words[2])
        if kind == EXITED:
            on_end = self._running.pop(first, None)
            self._send(b"R\0%d\0" % first, [])  # its end is noted: the zombie may go
            if on_end is not None:
                on_end(second)
            return
        starting = self._starting.pop(first, None)
        if starting is None:
            return
        answer, on_end = starting
        if kind == STARTED:
            self._running[second] = on_end
            if not answer.done():
                answer.set_result(second)
        elif not answer.done():
            answer.set_exception(OSError(second, f"the spawner could not start it: {os.strerror(second)}"))

    def _lose(self, why: str) -> None:
        """The spawner is gone (or let go): fail what waits for it, hand back what it watched."""
        self.alive = False
        self._loop.remove_reader(self._socket.fileno())
        if self._writing:
            self._loop.remove_writer(self._socket.fileno())
        self._socket.close()
        for _, fds in self._outbox:
            for fd in fds:
                os.close(fd)
        self._outbox.clear()
        for answer, _ in self._starting.values():
            if not answer.done():
                answer.set_exception(SpawnerLost(f"the spawner has ended ({why})"))
        self._starting.clear()
        running, self._running = self._running, {}
        if why != "closed":
            log.warning("Spawner lost (%s): %d processes it started are watched by pid", why, len(running))
        for on_end in running.values():
            on_end(None)
