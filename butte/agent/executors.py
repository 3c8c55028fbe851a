"""Custom executors: the framework's own executor processes, talking to the agent over the executor API.

The agent starts ``ExecutorInfo.command`` in its own session and sandbox with the MESOS_* environment, holds
its tasks until it SUBSCRIBEs (then sends LAUNCH for each), relays its updates and messages, passes kills
and acknowledgements back to it, and shuts it down with SHUTDOWN followed by a SIGKILL of its group after
the grace period. When the process exits, its unfinished tasks fail (REASON_EXECUTOR_TERMINATED) and the
master is told EXECUTOR_EXITED. An executor that does not subscribe within
``--executor_registration_timeout`` is killed.

An executor runs isolated as command tasks do (the agent's shared ``Containers``): its container holds the
executor's resources plus its tasks', and grows as tasks are added (Mesos's containerizer ``update()``). A
container past its memory limit is destroyed and its unfinished tasks fail with the limitation's reason, as
Mesos's agent reports a container limitation when the executor terminates.
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
from butte.containerizer.launcher import LaunchError, LaunchSpec, Process, UserIds
from butte.containerizer.sandbox import create_sandbox
from butte.core.errors import Forbidden, NotFound
from butte.executor.command import command_argv
from butte.wire.agent_link import AgentCall, ExecutorExited, ExecutorToFramework
from butte.wire.base import ID
from butte.wire.executor import (
    DataMessage,
    ExecutorAcknowledged,
    ExecutorCall,
    ExecutorEvent,
    ExecutorKill,
    ExecutorLaunch,
    ExecutorSubscribed,
)
from butte.wire.mesos import CommandInfo, CommandURI, ContainerID, ContainerStatus, KillPolicy, TaskInfo, TaskStatus

log = logging.getLogger(__name__)


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
class CustomExecutors:
    """Every custom executor of the agent; also the agent's side of the executor API (``ExecutorPort``)."""

    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self._runs: dict[tuple[str, str], ExecutorRun] = {}

    def run_task(self, framework: FrameworkState, task: TaskInfo) -> None:
        """Give a task to its executor, starting the executor first if it is not running."""
        assert task.executor is not None
        key = (framework.framework_id, task.executor.executor_id.value)
        run = self._runs.get(key)
        if run is None:
            run = self._launch(framework, task)
        elif run.container is not None:
            self._context.containers.update(run.executor.container_id, _limits(run.executor, task))
        record = TaskRecord(task, framework.framework_id, run.executor.executor_id, framework.info.user)
        self._context.state.add_task(run.executor, record)
        if run.executor.exited:
            self._fail_task(run, record, run.failure or "Executor failed to launch", "REASON_CONTAINER_LAUNCH_FAILED")
            self._context.executor_ended(run.executor)
        elif run.stream is not None:
            run.stream.send(ExecutorEvent(type="LAUNCH", launch=ExecutorLaunch(task=task)))
        else:
            run.queued.append(task)

    def recover(self, framework: FrameworkState, executor: ExecutorState, process: Process | None) -> None:
        """Reattach to an executor an earlier run of the agent started; it must resubscribe in time.

        Mesos gives recovered executors ``--executor_reregistration_timeout`` to come back and kills the
        rest; one that exited while the agent was down fails its unfinished tasks.
        """
        run = ExecutorRun(executor, framework, process=process)
        containers = self._context.containers
        run.container = containers.adopt(executor.container_id, _limits(executor), self._container_limited)
        if process is None:
            message = "Executor terminated while the agent was down"
            for record in list(executor.tasks.values()):
                self._fail_task(run, record, message, "REASON_EXECUTOR_TERMINATED")
            executor.exited = True
            self._context.executor_ended(executor)
            containers.release(executor.container_id)  # whatever it left behind goes with its container
            return
        run.container.started(process.pid)
        self._runs[(framework.framework_id, executor.executor_id)] = run
        loop = asyncio.get_running_loop()
        run.watcher = loop.create_task(self._watch(run, process))
        timeout_s = self._context.config.executor_reregistration_timeout_s
        run.timers.append(loop.call_later(timeout_s, self._reregistration_timed_out, run))

    def kill_task(self, executor: ExecutorState, task_id: str, kill_policy: KillPolicy | None) -> None:
        """Drop a task the executor has not got yet; ask the executor to kill one it has."""
        run = self._runs.get((executor.framework_id, executor.executor_id))
        if run is None:
            return
        queued = [task for task in run.queued if task.task_id.value == task_id]
        if queued:
            run.queued.remove(queued[0])
            record = executor.tasks.get(task_id)
            if record is not None:
                self._context.reporter.report(
                    record,
                    executor,
                    "TASK_KILLED",
                    source="SOURCE_AGENT",
                    message="Killed before delivery to the executor",
                    reason="REASON_TASK_KILLED_DURING_LAUNCH",
                )
        elif run.stream is not None:
            kill = ExecutorKill(task_id=ID(value=task_id), kill_policy=kill_policy)
            run.stream.send(ExecutorEvent(type="KILL", kill=kill))

    def shutdown_executor(self, executor: ExecutorState) -> None:
        """SHUTDOWN the executor, then SIGKILL its process group after its grace period."""
        run = self._runs.get((executor.framework_id, executor.executor_id))
        if run is None or run.shutting_down:
            return
        run.shutting_down = True
        if run.process is None:
            return  # still launching: it is killed as soon as it exists
        if run.stream is None:
            run.process.signal_group(signal.SIGKILL)  # it never subscribed: nothing to tell it
            return
        run.stream.send(ExecutorEvent(type="SHUTDOWN"))
        grace_s = self._grace_period_s(run)
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(grace_s, run.process.signal_group, signal.SIGKILL))

    def deliver_message(self, framework_id: str, executor_id: str, data: str) -> None:
        """A framework message for a subscribed executor (dropped otherwise, as Mesos does)."""
        run = self._runs.get((framework_id, executor_id))
        if run is None or run.stream is None:
            log.warning("Dropping message for executor %s: not subscribed", executor_id)
            return
        run.stream.send(ExecutorEvent(type="MESSAGE", message=DataMessage(data=data)))

    def acknowledged(self, framework_id: str, executor_id: str, task_id: str, uuid: str) -> None:
        """Tell the executor the framework acknowledged one of its updates."""
        run = self._runs.get((framework_id, executor_id))
        if run is not None and run.stream is not None:
            ack = ExecutorAcknowledged(task_id=ID(value=task_id), uuid=uuid)
            run.stream.send(ExecutorEvent(type="ACKNOWLEDGED", acknowledged=ack))

    def shutdown_all(self) -> None:
        """Shut every executor down (agent shutdown)."""
        for run in list(self._runs.values()):
            self.shutdown_executor(run.executor)

    def destroy_all(self) -> None:
        """SIGKILL every executor's process group at once."""
        for run in self._runs.values():
            if run.process is not None:
                run.process.signal_group(signal.SIGKILL)

    async def wait_all(self) -> None:
        """Wait until every executor has exited (those still launching included)."""
        watchers = [run.watcher for run in self._runs.values() if run.watcher is not None]
        await asyncio.gather(*(asyncio.shield(watcher) for watcher in watchers))

    # ---- the executor API (ExecutorPort) ----

    def subscribe(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        """An executor subscribed: SUBSCRIBED, then LAUNCH for every task it has not got.

        Raises:
            NotFound: the framework or the executor is not known here.
        """
        run = self._find(call)
        if run.stream is not None:
            run.stream.close()  # a second SUBSCRIBE replaces the first stream
        run.stream = stream
        if run.shutting_down:
            stream.send(ExecutorEvent(type="SHUTDOWN"))
            stream.close()
            return
        for timer in run.timers:
            timer.cancel()
        run.timers.clear()
        log.info("Executor %s of framework %s subscribed", run.executor.executor_id, run.framework.framework_id)
        stream.send(self._subscribed_event(run))
        self._take_unacknowledged(run, call)
        for task in run.queued:
            stream.send(ExecutorEvent(type="LAUNCH", launch=ExecutorLaunch(task=task)))
        run.queued.clear()

    def update(self, call: ExecutorCall) -> None:
        """An executor's status update: fill in the agent's fields and send it reliably.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        run = self._subscribed(call)
        assert call.update is not None
        self._forward_status(run, call.update.status)

    def _take_unacknowledged(self, run: ExecutorRun, call: ExecutorCall) -> None:
        """Updates a resubscribing executor still holds: forward those this agent never recorded.

        An agent killed right after taking an update may not have checkpointed it; Mesos takes them again
        from SUBSCRIBE, and the uuid tells which it has.
        """
        for update in call.subscribe.unacknowledged_updates if call.subscribe else []:
            record = run.executor.tasks.get(update.status.task_id.value)
            if record is not None and all(seen.uuid != update.status.uuid for seen in record.statuses):
                self._forward_status(run, update.status)

    def _forward_status(self, run: ExecutorRun, status: TaskStatus) -> None:
        status.agent_id = ID(value=self._context.agent_id)
        status.executor_id = run.executor.info.executor_id
        if status.container_status is None or status.container_status.container_id is None:
            status.container_status = ContainerStatus(container_id=ContainerID(value=run.executor.container_id))
        record = run.executor.tasks.get(status.task_id.value)
        if record is None:
            self._context.reporter.send_untracked(run.framework.framework_id, status)
        else:
            self._context.reporter.forward(record, status)

    def message(self, call: ExecutorCall) -> None:
        """An executor's message for its framework, relayed through the master.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        self._subscribed(call)
        assert call.message is not None
        relay = ExecutorToFramework(
            framework_id=call.framework_id, executor_id=call.executor_id, data=call.message.data
        )
        self._context.send(AgentCall(type="MESSAGE", agent_id=ID(value=self._context.agent_id), message=relay))

    def heartbeat(self, call: ExecutorCall) -> None:
        """Nothing to do but check who it is.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        self._subscribed(call)

    def disconnected(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        """An executor's stream ended."""
        run = self._runs.get((call.framework_id.value, call.executor_id.value))
        if run is not None and run.stream is stream:
            run.stream = None
            log.info("Executor %s of framework %s disconnected", call.executor_id.value, call.framework_id.value)

    # ---- internals ----

    def _find(self, call: ExecutorCall) -> ExecutorRun:
        if call.framework_id.value not in self._context.state.frameworks:
            raise NotFound("Framework cannot be found")
        run = self._runs.get((call.framework_id.value, call.executor_id.value))
        if run is None:
            raise NotFound("Executor cannot be found")
        return run

    def _subscribed(self, call: ExecutorCall) -> ExecutorRun:
        run = self._find(call)
        if run.stream is None:
            raise Forbidden("Executor is not subscribed")
        return run

    def _subscribed_event(self, run: ExecutorRun) -> ExecutorEvent:
        framework_info = run.framework.info
        subscribed = ExecutorSubscribed(
            executor_info=run.executor.info,
            framework_info=framework_info,
            agent_info=self._context.agent_info,
            container_id=ContainerID(value=run.executor.container_id),
        )
        return ExecutorEvent(type="SUBSCRIBED", subscribed=subscribed)

    def _launch(self, framework: FrameworkState, task: TaskInfo) -> ExecutorRun:
        assert task.executor is not None
        info = task.executor
        info.framework_id = framework.info.id
        executor = ExecutorState(info, framework.framework_id, ExecutorKind.CUSTOM, container_id="", directory="")
        self._context.state.add_executor(executor)
        run = self._runs[(framework.framework_id, executor.executor_id)] = ExecutorRun(executor, framework)
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
        containers, limits = self._context.containers, _limits(executor, task)
        run.container = containers.hooks(executor.container_id, self._container_limited)
        # With URIs the fetch makes the sandbox first; the container is set up on the spawn thread either way.
        isolate = containers.preparing(executor.container_id, limits, None if command.uris else prepare)
        spec = containers.launch_spec(self._launch_spec(run, command, user), executor.container_id)
        start = self._start(run, spec, fetching if command.uris else None, isolate)
        run.watcher = loop.create_task(start)
        timeout_s = self._context.config.executor_registration_timeout_s
        run.timers.append(loop.call_later(timeout_s, self._registration_timed_out, run))
        return run

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
        except LaunchError as exc:
            self._launch_failed(run, str(exc))
            for record in list(run.executor.tasks.values()):
                self._fail_task(run, record, run.failure or "", "REASON_CONTAINER_LAUNCH_FAILED")
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
        self._runs.pop((run.framework.framework_id, run.executor.executor_id), None)
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

    def _registration_timed_out(self, run: ExecutorRun) -> None:
        if run.stream is None and run.process is not None and run.process.returncode is None:
            log.warning("Executor %s did not subscribe in time; killing it", run.executor.executor_id)
            run.shutting_down = True
            run.end_reason = ("Executor did not register in time", "REASON_EXECUTOR_REGISTRATION_TIMEOUT")
            run.process.signal_group(signal.SIGKILL)

    def _reregistration_timed_out(self, run: ExecutorRun) -> None:
        if run.stream is None and run.process is not None and run.process.returncode is None:
            log.warning("Executor %s did not resubscribe after recovery; killing it", run.executor.executor_id)
            run.shutting_down = True
            run.end_reason = ("Executor did not reregister in time", "REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
            run.process.signal_group(signal.SIGKILL)

    async def _watch(self, run: ExecutorRun, process: Process) -> None:
        returncode = await process.wait()
        for timer in run.timers:
            timer.cancel()
        if run.stream is not None:
            run.stream.close()
        self._runs.pop((run.framework.framework_id, run.executor.executor_id), None)
        log.info(
            "Executor %s of framework %s exited (%d)", run.executor.executor_id, run.framework.framework_id, returncode
        )
        # The OOM killer may have ended the executor itself before its event was read: ask the container.
        limitation = run.container.limitation() if run.container and not run.limited and returncode else None
        if limitation is not None:
            run.end_reason = (limitation.message, limitation.reason)
        message, reason = run.end_reason
        for record in list(run.executor.tasks.values()):
            self._fail_task(run, record, message, reason)
        run.executor.exited = True
        self._send_exited(run.executor, returncode)
        self._context.executor_ended(run.executor)
        self._context.containers.release(run.executor.container_id)

    def _container_limited(self, container_id: str, limitation: Limitation) -> None:
        """A container past a limit is destroyed; its executor's unfinished tasks fail with the limitation."""
        run = next((run for run in self._runs.values() if run.executor.container_id == container_id), None)
        if run is None or run.limited:
            return
        run.limited = run.shutting_down = True
        run.end_reason = (limitation.message, limitation.reason)
        if run.process is not None:  # else it is killed as soon as it exists
            run.process.signal_group(signal.SIGKILL)

    def _fail_task(self, run: ExecutorRun, record: TaskRecord, message: str, reason: str) -> None:
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

    def _grace_period_s(self, run: ExecutorRun) -> float:
        period = run.executor.info.shutdown_grace_period
        return period.nanoseconds / 1e9 if period else self._context.config.executor_shutdown_grace_period_s


def _limits(executor: ExecutorState, adding: TaskInfo | None = None) -> ContainerLimits:
    """What the executor's container may use: the executor's own resources plus its unfinished tasks'."""
    tasks = [record.info for record in executor.tasks.values() if not record.terminal]
    if adding is not None:
        tasks.append(adding)
    return limits_of([*executor.info.resources, *(resource for task in tasks for resource in task.resources)])
