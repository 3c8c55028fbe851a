"""The built-in command executor, run inside the agent: one ``TaskInfo.command`` as one process group.

It follows Mesos's command executor: TASK_STARTING, then TASK_RUNNING once the command is spawned, then
TASK_FINISHED (exit 0), TASK_FAILED ("Command exited with status N" / "Command terminated with signal
NAME") or TASK_KILLED after a kill. A kill sends SIGTERM to the group and SIGKILL after the grace period
(the kill policy's, else 3 s). No Python interpreter runs per task: the agent spawns the command itself.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol, final

from butte.containerizer.isolators.base import Limitation
from butte.containerizer.isolators.isolation import ContainerHooks
from butte.containerizer.launcher import Launcher, LaunchError, LaunchSpec
from butte.containerizer.process import Process
from butte.wire.mesos import CommandInfo, KillPolicy, Source, TaskState

log = logging.getLogger(__name__)

# Mesos's command executor waits this long between SIGTERM and SIGKILL when no kill policy says otherwise.
DEFAULT_KILL_GRACE_S = 3.0


class Report(Protocol):
    """Sends one status update of the task."""

    def __call__(
        self,
        state: TaskState,
        *,
        source: Source = "SOURCE_EXECUTOR",
        message: str | None = None,
        reason: str | None = None,
    ) -> None: ...


def command_argv(command: CommandInfo) -> tuple[tuple[str, ...], str | None]:
    """The argv (and the executable when it differs from argv[0]) of a CommandInfo, as Mesos runs it."""
    value = command.value or ""
    if command.shell:
        return ("/bin/sh", "-c", value), None
    # shell=false: ``value`` is the program and ``arguments`` its whole argv, argv[0] included.
    return (tuple(command.arguments) or (value,)), value


def grace_period_s(*policies: KillPolicy | None) -> float:
    """The first grace period given (KILL_TASK's, then the task's), else Mesos's 3 s."""
    for policy in policies:
        if policy is not None and policy.grace_period is not None:
            return policy.grace_period.nanoseconds / 1e9
    return DEFAULT_KILL_GRACE_S


def launch_failure(exc: Exception) -> str:
    """The message of a failed launch; an error other than LaunchError is a bug, and is logged in full."""
    if isinstance(exc, LaunchError):
        return str(exc)
    log.error("Launch failed unexpectedly", exc_info=exc)
    return f"Failed to launch: {exc!r}"


def describe_exit(returncode: int) -> str:
    """Mesos's wording of how a command ended."""
    if returncode >= 0:
        return f"Command exited with status {returncode}"
    return f"Command terminated with signal {signal.strsignal(-returncode) or -returncode}"


@final
class CommandTask:
    """One command task: spawn it, report its states, kill it on request."""

    def __init__(
        self,
        spec: LaunchSpec,
        report: Report,
        launcher: Launcher,
        *,
        prepare: Callable[[], object] | None = None,
        kill_policy: KillPolicy | None = None,
        announce_killing: bool = False,
        on_exit: Callable[[CommandTask, TaskState], None] | None = None,
        fetch: Callable[[], Awaitable[object]] | None = None,
        container: ContainerHooks | None = None,
    ) -> None:
        self._spec = spec
        self._report = report
        self._launcher = launcher
        self._prepare = prepare
        self._kill_policy = kill_policy
        self._announce_killing = announce_killing
        self._on_exit = on_exit
        self._fetch = fetch  # URIs into the sandbox before the spawn (the fetcher); raises LaunchError
        self._ending: tuple[TaskState, str, str | None] | None = None  # how a kill_as() kill is reported
        self._container = container  # its isolation: told of the pid, asked for a limitation at exit
        self._limitation: Limitation | None = None
        self._process: Process | None = None
        self._killing = False
        self._watcher: asyncio.Task[None] | None = None
        self._killer: asyncio.Task[int] | None = None
        self.final_state: TaskState | None = None

    def start(self) -> None:
        """Report TASK_STARTING and launch in the background; TASK_RUNNING follows the spawn."""
        self._report("TASK_STARTING")
        self._watcher = asyncio.get_running_loop().create_task(self._run())

    def cancel(self, message: str) -> None:
        """Report TASK_KILLED for a task that was never started."""
        if self._watcher is None and self.final_state is None:
            self._finish("TASK_KILLED", message, source="SOURCE_AGENT", reason="REASON_TASK_KILLED_DURING_LAUNCH")

    def kill(self, kill_policy: KillPolicy | None = None) -> None:
        """SIGTERM the task's group now and SIGKILL it after the grace period (a repeated kill is a no-op)."""
        if self._watcher is None or self.final_state is not None or self._killing:
            return
        self._killing = True
        if self._announce_killing:
            self._report("TASK_KILLING")
        if self._process is not None:  # else it is still launching: _run kills it once it exists
            grace_s = grace_period_s(kill_policy, self._kill_policy)
            self._killer = asyncio.get_running_loop().create_task(self._process.kill(grace_s))

    def kill_as(self, state: TaskState, message: str, reason: str | None) -> None:
        """Kill the task, reporting its end as ``state`` (a failed health check, a passed deadline)."""
        if self._watcher is not None and self.final_state is None and not self._killing:
            self._ending = (state, message, reason)
            self.kill()

    def limit(self, limitation: Limitation) -> None:
        """The container went past a limit: SIGKILL the task, which ends TASK_FAILED with the limitation."""
        if self.final_state is None and self._limitation is None:
            self._limitation = limitation
            if self._process is not None:
                self._process.signal_group(signal.SIGKILL)

    def destroy(self) -> None:
        """SIGKILL the group at once (agent shutdown); the exit is still reported."""
        if self.final_state is None:
            self._killing = True
            if self._process is not None:
                self._process.signal_group(signal.SIGKILL)

    async def wait(self) -> TaskState | None:
        """Wait until the task has ended; its terminal state."""
        if self._watcher is not None:
            await asyncio.shield(self._watcher)
        return self.final_state

    async def _run(self) -> None:
        try:
            if self._fetch is not None:
                await self._fetch()
            process = await self._launcher.launch(self._spec, self._prepare)
        except Exception as exc:  # LaunchError; anything else is a bug, reported rather than left starting forever
            reason = "REASON_CONTAINER_LAUNCH_FAILED"
            self._finish("TASK_FAILED", launch_failure(exc), source="SOURCE_AGENT", reason=reason)
            return
        self._process = process
        if self._killing or self._limitation is not None:
            process.signal_group(signal.SIGKILL)  # killed (or limited) while it was launching
        else:
            self._report("TASK_RUNNING")
        if self._container is not None:
            self._container.started(process.pid)
        returncode = await process.wait()
        message = describe_exit(returncode)
        # A limit kills the task, so a clean exit needs no look at the container (for posix that is a /proc sweep).
        limited_now = self._container.limitation() if self._container and returncode != 0 else None
        limitation = self._limitation or limited_now
        if limitation is not None:
            self._finish("TASK_FAILED", limitation.message, source="SOURCE_AGENT", reason=limitation.reason)
        elif self._ending is not None:
            ended_as, why, ending_reason = self._ending
            self._finish(ended_as, why, reason=ending_reason)
        elif self._killing:
            self._finish("TASK_KILLED", message)
        elif returncode == 0:
            self._finish("TASK_FINISHED", message)
        else:
            self._finish("TASK_FAILED", message)

    def _finish(
        self, state: TaskState, message: str, source: Source = "SOURCE_EXECUTOR", reason: str | None = None
    ) -> None:
        self.final_state = state
        self._report(state, source=source, message=message, reason=reason)
        if self._on_exit is not None:
            self._on_exit(self, state)
