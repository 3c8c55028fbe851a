"""Launching custom executors and seeing each process to its end.

``ExecutorLauncher`` starts ``ExecutorInfo.command`` in its own session and sandbox with the MESOS_*
environment, fetching ``CommandInfo.uris`` first, and reattaches to executors an earlier run of the agent
started. An executor that does not subscribe within ``--executor_registration_timeout`` (or, recovered, within
``--executor_reregistration_timeout``) is killed. When the process exits, its unfinished tasks fail
(REASON_EXECUTOR_TERMINATED, or the reason it was killed for) and the master is told EXECUTOR_EXITED.

An executor runs isolated as command tasks do (the agent's shared ``Containers``): its container holds the
executor's resources plus its tasks' (``container_limits``). A container past its memory limit is destroyed
and its unfinished tasks fail with the limitation's reason, as Mesos's agent reports a container limitation
when the executor terminates. The executor API side, which talks to the running executor, is
``butte.agent.executors``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import final

from butte.agent.api.executor import ExecutorStream
from butte.agent.context import AgentContext
from butte.agent.state import ExecutorKind, ExecutorState, FrameworkState, TaskRecord
from butte.containerizer.environment import executor_environment
from butte.containerizer.isolators.base import ContainerLimits, Limitation
from butte.containerizer.isolators.containers import limits_of
from butte.containerizer.isolators.isolation import ContainerHooks
from butte.containerizer.launcher import LaunchSpec, UserIds
from butte.containerizer.process import Process
from butte.containerizer.sandbox import create_sandbox
from butte.core.errors import NotFound
from butte.executor.command import command_argv, launch_failure
from butte.wire.agent_link import AgentCall, ExecutorExited
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, CommandURI, TaskInfo

log = logging.getLogger(__name__)

# What an executor that did not (re)subscribe in time is told it ended of: the log's words, the message, the reason.
REGISTRATION_TIMEOUT = (
    "subscribe in time",
    "Executor did not register in time",
    "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
)
REREGISTRATION_TIMEOUT = (
    "resubscribe after recovery",
    "Executor did not reregister in time",
    "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
)


@final
@dataclass(slots=True)
class ExecutorRun:
    """A running custom executor: its process, its subscription, and tasks it has not been given yet."""

    executor: ExecutorState
    framework: FrameworkState
    process: Process | None = None
    stream: ExecutorStream | None = None
    queued: list[TaskInfo] = field(default_factory=list)
    shutting_down: bool = False
    failure: str | None = None
    # How its unfinished tasks are reported when the process ends: (message, reason).
    end_reason: tuple[str, str] = ("Executor terminated", "REASON_EXECUTOR_TERMINATED")
    watcher: asyncio.Task[None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    container: ContainerHooks | None = None  # its isolation, once its container is planned
    limited: bool = False


@final
class ExecutorLauncher:
    """Starts and adopts custom executors, times out those that do not subscribe, and ends them when they exit.

    It owns ``runs``: a run is added when its executor is launched or adopted and removed when its process
    exits or fails to launch; ``CustomExecutors`` looks runs up there to talk to them.
    """

    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self.runs: dict[tuple[str, str], ExecutorRun] = {}

    def launch(self, framework: FrameworkState, task: TaskInfo) -> ExecutorRun:
        """Start the task's executor in a new container; it must subscribe within the registration timeout."""
        assert task.executor is not None
        info = task.executor
        info.framework_id = framework.info.id
        executor = ExecutorState(info, framework.framework_id, ExecutorKind.CUSTOM, container_id="", directory="")
        self._context.state.add_executor(executor)
        run = self.runs[(framework.framework_id, executor.executor_id)] = ExecutorRun(executor, framework)
        command = info.command or CommandInfo()
        try:
            user = self._context.resolve_user(command.user, framework)
        except NotFound as exc:
            self._launch_failed(run, str(exc))
            return run
        executor.container_id, runs_dir, executor.directory = self._context.plan_container(
            framework.framework_id, executor.executor_id
        )
        prepare = functools.partial(create_sandbox, runs_dir, executor.container_id, user)
        loop = asyncio.get_running_loop()
        fetching = functools.partial(self._fetch_into, prepare, command.uris, executor.directory, user)
        containers, limits = self._context.containers, container_limits(executor, task)
        run.container = containers.hooks(executor.container_id, self._container_limited)
        # With URIs the fetch makes the sandbox first; the container is set up on the spawn thread either way.
        isolate = containers.preparing(executor.container_id, limits, None if command.uris else prepare)
        spec = containers.launch_spec(self._launch_spec(run, command, user), executor.container_id)
        start = self._start(run, spec, fetching if command.uris else None, isolate)
        run.watcher = loop.create_task(start)
        timeout_s = self._context.config.executor_registration_timeout_s
        run.timers.append(loop.call_later(timeout_s, _kill_unless_subscribed, run, REGISTRATION_TIMEOUT))
        return run

    def adopt(self, framework: FrameworkState, executor: ExecutorState, process: Process | None) -> None:
        """Reattach to an executor an earlier run of the agent started; it must resubscribe in time.

        Mesos gives recovered executors ``--executor_reregistration_timeout`` to come back and kills the
        rest; one that exited while the agent was down fails its unfinished tasks.
        """
        run = ExecutorRun(executor, framework, process=process)
        containers = self._context.containers
        run.container = containers.adopt(executor.container_id, container_limits(executor), self._container_limited)
        if process is None:
            message = "Executor terminated while the agent was down"
            for record in list(executor.tasks.values()):
                self.fail_task(run, record, message, "REASON_EXECUTOR_TERMINATED")
            executor.exited = True
            self._context.executor_ended(executor)
            containers.release(executor.container_id)  # whatever it left behind goes with its container
            return
        run.container.started(process.pid)
        self.runs[(framework.framework_id, executor.executor_id)] = run
        loop = asyncio.get_running_loop()
        run.watcher = loop.create_task(self._watch(run, process))
        timeout_s = self._context.config.executor_reregistration_timeout_s
        run.timers.append(loop.call_later(timeout_s, _kill_unless_subscribed, run, REREGISTRATION_TIMEOUT))

    async def _start(
        self,
        run: ExecutorRun,
        spec: LaunchSpec,
        fetch: Callable[[], Awaitable[None]] | None,
        prepare: Callable[[], object],
    ) -> None:
        try:
            if fetch is not None:  # the fetch makes the sandbox first, then fills it
                await fetch()
            process = await self._context.launcher.launch(spec, prepare)
        except Exception as exc:  # LaunchError; anything else is a bug: the tasks fail rather than hang
            self._launch_failed(run, launch_failure(exc))
            for record in list(run.executor.tasks.values()):
                self.fail_task(run, record, run.failure or "", "REASON_CONTAINER_LAUNCH_FAILED")
            run.queued.clear()
            self._context.executor_ended(run.executor)
            self._context.containers.release(run.executor.container_id)
            return
        run.process = process
        if run.container is not None:
            run.container.started(process.pid)
        log.info(
            "Launched executor %s of framework %s (pid %d)",
            run.executor.executor_id,
            run.framework.framework_id,
            process.pid,
        )
        if run.shutting_down:
            process.signal_group(signal.SIGKILL)  # shut down (or limited) while it was launching
        await self._watch(run, process)

    async def _fetch_into(
        self, prepare: Callable[[], object], uris: list[CommandURI], sandbox: str, user: UserIds | None
    ) -> None:
        """Make the executor's sandbox, then fetch ``CommandInfo.uris`` into it (a FetchError is a LaunchError)."""
        await asyncio.get_running_loop().run_in_executor(None, prepare)
        await self._context.fetcher.fetch(uris, sandbox, user)

    def _launch_failed(self, run: ExecutorRun, message: str) -> None:
        log.warning("Failed to launch executor %s: %s", run.executor.executor_id, message)
        for timer in run.timers:
            timer.cancel()
        self.runs.pop((run.framework.framework_id, run.executor.executor_id), None)
        run.executor.exited = True
        run.failure = f"Failed to launch executor: {message}"
        self._send_exited(run.executor, None)

    def _launch_spec(self, run: ExecutorRun, command: CommandInfo, user: UserIds | None) -> LaunchSpec:
        directory = run.executor.directory
        context = self._context.executor_context(run.framework, run.executor.executor_id, directory)
        argv, program = command_argv(command)
        return LaunchSpec(
            argv=argv,
            env=executor_environment(self._context.base_env, context, command.environment),
            cwd=directory,
            stdout_path=os.path.join(directory, "stdout"),
            stderr_path=os.path.join(directory, "stderr"),
            user=user,
            executable=program,
        )

    async def _watch(self, run: ExecutorRun, process: Process) -> None:
        returncode = await process.wait()
        for timer in run.timers:
            timer.cancel()
        if run.stream is not None:
            run.stream.close()
        self.runs.pop((run.framework.framework_id, run.executor.executor_id), None)
        log.info(
            "Executor %s of framework %s exited (%d)", run.executor.executor_id, run.framework.framework_id, returncode
        )
        # The OOM killer may have ended the executor itself before its event was read: ask the container.
        limitation = run.container.limitation() if run.container and not run.limited and returncode else None
        if limitation is not None:
            run.end_reason = (limitation.message, limitation.reason)
        message, reason = run.end_reason
        for record in list(run.executor.tasks.values()):
            self.fail_task(run, record, message, reason)
        run.executor.exited = True
        self._send_exited(run.executor, returncode)
        self._context.executor_ended(run.executor)
        self._context.containers.release(run.executor.container_id)

    def _container_limited(self, container_id: str, limitation: Limitation) -> None:
        """A container past a limit is destroyed; its executor's unfinished tasks fail with the limitation."""
        run = next((run for run in self.runs.values() if run.executor.container_id == container_id), None)
        if run is None or run.limited:
            return
        run.limited = run.shutting_down = True
        run.end_reason = (limitation.message, limitation.reason)
        if run.process is not None:  # else it is killed as soon as it exists
            run.process.signal_group(signal.SIGKILL)

    def fail_task(self, run: ExecutorRun, record: TaskRecord, message: str, reason: str) -> None:
        """TASK_FAILED for an unfinished task, unless its framework is being torn down anyway."""
        if not record.terminal and not run.framework.terminating:
            self._context.reporter.report(
                record, run.executor, "TASK_FAILED", source="SOURCE_AGENT", message=message, reason=reason
            )

    def _send_exited(self, executor: ExecutorState, returncode: int | None) -> None:
        # Mesos reports the raw wait status: exit code in the high byte, or the signal number.
        status = None if returncode is None else (returncode << 8 if returncode >= 0 else -returncode)
        exited = ExecutorExited(
            framework_id=ID(value=executor.framework_id), executor_id=executor.info.executor_id, status=status
        )
        self._context.send(
            AgentCall(type="EXECUTOR_EXITED", agent_id=ID(value=self._context.agent_id), executor_exited=exited)
        )


def _kill_unless_subscribed(run: ExecutorRun, timeout: tuple[str, str, str]) -> None:
    """The (re)registration timer: an executor still running without a subscription is killed."""
    if run.stream is None and run.process is not None and run.process.returncode is None:
        did_not, message, reason = timeout
        log.warning("Executor %s did not %s; killing it", run.executor.executor_id, did_not)
        run.shutting_down = True
        run.end_reason = (message, reason)
        run.process.signal_group(signal.SIGKILL)


def container_limits(executor: ExecutorState, adding: TaskInfo | None = None) -> ContainerLimits:
    """What the executor's container may use: the executor's own resources plus its unfinished tasks'."""
    tasks = [record.info for record in executor.tasks.values() if not record.terminal]
    if adding is not None:
        tasks.append(adding)
    return limits_of([*executor.info.resources, *(resource for task in tasks for resource in task.resources)])
