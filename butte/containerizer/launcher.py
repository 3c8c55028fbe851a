"""Spawn task and executor processes cheaply, and learn of their exit without a thread per child.

Each process starts in a new session, so it leads its own process group: a kill reaches everything it
started (Mesos's POSIX launcher does the same). ``start_new_session`` keeps CPython on its vfork path; a
``preexec_fn`` would force a full fork, about 3x slower. Exits are watched with a pidfd registered on the
event loop (``os.pidfd_open`` + ``loop.add_reader``), never with asyncio's child watchers, which start a
thread per child.

When the group leader exits, whatever it left in its group is killed before the leader is reaped (the
leader's pid cannot be reused while it is a zombie), as Mesos destroys an executor's container when the
executor exits.

The blocking part of a launch (sandbox directories and output files, then the spawn itself, during which
vfork holds the calling thread until the child has exec'd) runs on a small fixed pool of threads: on a
host where creating a file or directory costs ~0.5 ms, doing it on the event loop capped launches near
40/s. An optional ``sh`` wrapper records the exit status in the sandbox, so an agent that restarts (and so
is no longer the parent) still learns it; it costs ~30-40% of raw spawn throughput (bench/spawn), so only
tasks of checkpointing frameworks use it. :func:`~process.adopt_process` watches such a process after a restart.

Where the agent has butte-isolate (isolated tasks, and those of checkpointing frameworks, start through it), its
runs are not spawned here but by the agent's spawner (:mod:`spawner`, :meth:`Launcher.spawn_through`): the spawn
thread only prepares the sandbox and opens the output files, and the event loop sends the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import final

from butte.containerizer.pid_namespaces import PidNamespaces
from butte.containerizer.process import Process, read_exit_status, signal_group, unwrap_code
from butte.containerizer.spawner import Spawner, SpawnerLost
from butte.core.errors import ButteError, NotFound

log = logging.getLogger(__name__)

# Records the command's exit status in the sandbox, so that an agent that restarts (and so is no longer
# the parent) can still learn it. "$0" is the status file; the command follows as "$@". The trap keeps the
# shell alive through the SIGTERM a kill sends the group (handlers are not inherited: the command still
# gets the signal), so the command's own status is recorded; the shell reports a signal as 128 + its number.
EXIT_STATUS_WRAPPER = 'trap : TERM INT HUP; "$@"; s=$?; echo $s > "$0"; exit $s'
EXIT_STATUS_FILE = ".butte_exit_status"  # in the task's working directory


class LaunchError(ButteError):
    """The process could not be started (missing executable, bad user, unreadable sandbox)."""


@final
@dataclass(frozen=True, slots=True)
class UserIds:
    """The identity a process is switched to."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def lookup_user(name: str) -> UserIds:
    """The uid, gid and supplementary groups of a user, as Mesos's ``su`` step would set them.

    Raises:
        NotFound: there is no such user on this host.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise NotFound(f"Failed to get user information for '{name}': no such user") from exc
    groups = tuple(os.getgrouplist(name, entry.pw_gid))
    return UserIds(name, entry.pw_uid, entry.pw_gid, groups)


@final
@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to start: argv, environment, working directory, output files and identity."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    user: UserIds | None = None
    exit_status_path: str | None = None
    executable: str | None = None  # when argv[0] is not the program's path (CommandInfo shell=false)
    # Run first, then exec the command: how a task lands in its cgroups and namespaces (isolators.isolation).
    prelude: tuple[str, ...] = ()
    # butte-isolate, when built: it records the exit status in place of the `sh -c` wrapper (isolators.helper).
    status_helper: str | None = None
    # Start it as the init of a new pid namespace (butte-isolate --pidns then is that init: pid_namespaces).
    new_pid_namespace: bool = False


def _popen_reaper(popen: subprocess.Popen[bytes], wrapped: bool) -> Callable[[], int]:
    def reap() -> int:
        code = popen.poll()
        if code is None:  # cannot happen once the pidfd is readable; keep the future honest anyway
            code = popen.wait()
        return unwrap_code(code) if wrapped else code

    return reap


@final
class Launcher:
    """Starts processes in their own sessions and watches them on the event loop.

    :meth:`launch` does the blocking part (sandbox directories, output files, the spawn itself, during which
    vfork holds the calling thread until the child has exec'd) on a small fixed pool of threads, so the event
    loop keeps serving while filesystem and exec latency overlap. No thread is held per running process.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        spawn_threads: int = 4,
        on_started: Callable[[LaunchSpec, int], None] | None = None,
    ) -> None:
        self._loop = loop
        self._pool = ThreadPoolExecutor(max_workers=spawn_threads, thread_name_prefix="launcher")
        self._namespaces = PidNamespaces()
        # Told of every process started (the agent checkpoints its pid, to find it again after a restart).
        self.on_started = on_started
        self._reattached: dict[str, Process] = {}
        self._helper: str | None = None
        self._spawner: Spawner | None = None

    def reattach(self, cwd: str, process: Process) -> None:
        """Hand an adopted process to the next launch of a spec with this ``cwd`` instead of spawning one.

        A task found running at recovery goes through the same runner as a new one (kill, report, exit).
        """
        self._reattached[cwd] = process

    def spawn_through(self, helper: str) -> None:
        """Start butte-isolate's runs (``helper``: its path) through a spawner of the agent's (:mod:`spawner`)."""
        self._helper = helper

    async def launch(self, spec: LaunchSpec, prepare: Callable[[], object] | None = None) -> Process:
        """Run ``prepare`` (e.g. make the sandbox), then start ``spec``, off the event loop.

        Raises:
            LaunchError: preparing or starting failed.
        """
        reattached = self._reattached.pop(spec.cwd, None)
        if reattached is not None:
            return reattached
        loop = self._loop or asyncio.get_running_loop()
        started, outcome = await loop.run_in_executor(
            self._pool, _prepare_and_start, spec, prepare, self._namespaces, self._helper
        )
        # A recorded status, and an init's exit (it cannot die of its own signal), give a signal N as 128 + N.
        wrapped = started.exit_status_path is not None or started.new_pid_namespace
        process: Process | None = None
        try:
            if isinstance(outcome, subprocess.Popen):
                process = Process(outcome.pid, loop, _popen_reaper(outcome, wrapped))
            else:
                process = await self._spawn(started, outcome, wrapped, loop)
            if self.on_started is not None:
                self.on_started(spec, process.pid)
        except LaunchError:
            raise
        except Exception as exc:
            # Started, but not watched or not recorded: it must not run on unseen while its task is reported
            # failed (a framework would start it again: two would run).
            await self._undo_start(outcome, process, loop)
            raise LaunchError(f"Failed to keep track of {spec.argv[0]!r}: {exc}") from exc
        return process

    async def _spawn(
        self, spec: LaunchSpec, output: tuple[int, int], wrapped: bool, loop: asyncio.AbstractEventLoop
    ) -> Process:
        """Start ``spec`` (a butte-isolate run) through the spawner, with ``output`` open for it (taken over).

        Raises:
            LaunchError: it could not be started.
        """
        ended: asyncio.Future[int | None] = loop.create_future()
        argv = _wrapped_argv(spec)
        spawner = self._spawner_on(loop)
        pid: int | None = None
        if spawner is not None:
            try:
                pid = await spawner.start(argv, spec.env, spec.cwd, spec.new_pid_namespace, output, ended.set_result)
            except (OSError, SpawnerLost) as exc:
                raise LaunchError(f"Failed to launch {argv[0]!r}: {exc}") from exc
        if pid is None:  # no spawner, or too large a request for it: started as any other process
            for fd in output:
                os.close(fd)
            popen = await loop.run_in_executor(self._pool, start_process, spec, self._namespaces)
            return Process(popen.pid, loop, _popen_reaper(popen, wrapped))
        process = Process(pid, loop, None)
        ended.add_done_callback(lambda done: _spawned_ended(process, done.result(), wrapped, spec.exit_status_path))
        return process

    def _spawner_on(self, loop: asyncio.AbstractEventLoop) -> Spawner | None:
        """The running spawner (a new one when there is none yet, or it was lost); None when it cannot start."""
        if self._helper is not None and (self._spawner is None or not self._spawner.alive):
            try:
                self._spawner = Spawner(self._helper, loop)
            except OSError as exc:
                log.warning("Cannot start the spawner (%s): butte-isolate runs start one by one", exc)
                self._helper, self._spawner = None, None
        return self._spawner

    async def _undo_start(
        self,
        outcome: subprocess.Popen[bytes] | tuple[int, int],
        process: Process | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """SIGKILL a process group just started, and reap its leader (by its watcher, when it has one)."""
        if process is not None:
            process.signal_group(signal.SIGKILL)
            await process.wait()
        elif isinstance(outcome, subprocess.Popen):
            signal_group(outcome.pid, signal.SIGKILL)
            await loop.run_in_executor(self._pool, outcome.wait)

    def close(self) -> None:
        """Let the spawn threads (and the spawner) go once their work is done."""
        self._pool.shutdown(wait=False)
        if self._spawner is not None:
            self._spawner.close()


def _spawned_ended(process: Process, code: int | None, wrapped: bool, exit_status_path: str | None) -> None:
    if code is None:  # the spawner was lost while it ran: watch it as a process adopted at recovery is
        process.watch_by_pid(lambda: read_exit_status(exit_status_path))
    else:
        process.ended(unwrap_code(code) if wrapped else code)


def _prepare_and_start(
    spec: LaunchSpec, prepare: Callable[[], object] | None, namespaces: PidNamespaces, helper: str | None
) -> tuple[LaunchSpec, subprocess.Popen[bytes] | tuple[int, int]]:
    """``prepare``, then the spawn: the spec it started from, and the process; or, for a butte-isolate run that the
    spawner is to start (``helper``: its path), its stdout and stderr, open."""
    prepared = prepare() if prepare is not None else None
    # A step that decides how the process starts (isolators.containers, by butte-isolate) returns the spec.
    started = prepared if isinstance(prepared, LaunchSpec) else spec
    if helper is not None and _identity_change(started.user) is None and _wrapped_argv(started)[0] == helper:
        return started, _open_output(started)
    return started, start_process(started, namespaces)


def start_process(spec: LaunchSpec, namespaces: PidNamespaces | None = None) -> subprocess.Popen[bytes]:
    """Start ``spec`` in a new session; blocking (safe to call from any thread). ``namespaces`` makes the
    pid namespace of a spec that asks for one (without, or where the kernel will not, its prelude makes it).

    Raises:
        LaunchError: the executable, the working directory or the output files cannot be used.
    """
    if namespaces is None or not spec.new_pid_namespace:
        return _spawn(spec)
    with namespaces.for_next_child():
        return _spawn(spec)


def _spawn(spec: LaunchSpec) -> subprocess.Popen[bytes]:
    argv = _wrapped_argv(spec)
    switch_to = _identity_change(spec.user)
    stdout, stderr = _open_output(spec)  # handed to the child, closed right after
    try:
        return subprocess.Popen(
            argv,
            executable=spec.executable if spec.exit_status_path is None and not spec.prelude else None,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=spec.cwd,
            env=dict(spec.env),
            start_new_session=True,
            user=switch_to.uid if switch_to else None,
            group=switch_to.gid if switch_to else None,
            extra_groups=list(switch_to.groups) if switch_to else None,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise LaunchError(f"Failed to launch {argv[0]!r}: {exc}") from exc
    finally:
        os.close(stdout)
        os.close(stderr)


def _wrapped_argv(spec: LaunchSpec) -> list[str]:
    if spec.exit_status_path is None and not spec.prelude:
        return list(spec.argv)
    # A wrapper cannot give the program an argv[0] of its own, so it runs it under its path.
    program = [spec.executable or spec.argv[0], *spec.argv[1:]]
    helper = spec.status_helper
    if spec.exit_status_path is not None and helper is not None:
        recording = [helper, "--exit-status", spec.exit_status_path]
        if spec.prelude[:1] == (helper,):  # one helper both isolates and records
            return [*recording, *spec.prelude[1:], *program]
        return [*recording, "--", *spec.prelude, *program]
    if spec.exit_status_path is not None:
        program = ["/bin/sh", "-c", EXIT_STATUS_WRAPPER, spec.exit_status_path, *program]
    return [*spec.prelude, *program]


def _open_output(spec: LaunchSpec) -> tuple[int, int]:
    """The spec's stdout and stderr files, open for appending and owned by whom the process runs as.

    Raises:
        LaunchError: one cannot be opened.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    opened: list[int] = []
    try:
        for path in (spec.stdout_path, spec.stderr_path):
            opened.append(os.open(path, flags, 0o666))
        user = _identity_change(spec.user)
        if user is not None:
            # The task may reopen its own output files, as it could in a Mesos sandbox.
            for fd in opened:
                os.fchown(fd, user.uid, user.gid)
    except OSError as exc:
        for fd in opened:
            os.close(fd)
        if len(opened) < 2:
            raise LaunchError(f"Failed to open {path}: {exc}") from exc
        raise
    return opened[0], opened[1]


def _identity_change(user: UserIds | None) -> UserIds | None:
    # Switching identity takes CPython off its vfork path, so only do it when it changes something.
    if user is None or (user.uid == os.geteuid() and user.gid == os.getegid()):
        return None
    return user
