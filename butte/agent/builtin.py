"""Tasks the agent runs itself: command tasks (Mesos's command executor) and task groups (its default executor).

A command task's executor id is its task id, as in Mesos; a group's tasks share the group's executor
and sandbox, each task in ``tasks/<task id>`` of it. Launch failures (no such user, no sandbox) are
TASK_FAILED updates from the agent, never exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from typing import final

from butte.agent.context import AgentContext
from butte.agent.health import ProbeContext, TaskChecks
from butte.agent.state import ExecutorKind, ExecutorState, FrameworkState, TaskRecord
from butte.containerizer.environment import command_variables, executor_environment
from butte.containerizer.isolators.base import Limitation
from butte.containerizer.isolators.containers import limits_of
from butte.containerizer.isolators.isolation import ContainerHooks
from butte.containerizer.launcher import EXIT_STATUS_FILE, Launcher, LaunchError, LaunchSpec, UserIds
from butte.containerizer.process import Process
from butte.containerizer.sandbox import create_sandbox, create_task_dir, task_dir
from butte.core.errors import NotFound
from butte.executor.command import CommandTask, Report, command_argv, describe_exit
from butte.executor.group import TaskGroupRun
from butte.wire.base import ID
from butte.wire.mesos import (
    CommandInfo,
    CommandURI,
    ExecutorInfo,
    KillPolicy,
    Source,
    TaskGroupInfo,
    TaskInfo,
    TaskState,
)

log = logging.getLogger(__name__)

Runner = CommandTask | TaskGroupRun
# The states a running task moves through, in order: a reattached runner announces none it has passed.
_PROGRESS: dict[str, int] = {"TASK_STAGING": 0, "TASK_STARTING": 1, "TASK_RUNNING": 2, "TASK_KILLING": 3}
ExitCallback = Callable[[CommandTask, TaskState], None]
# At recovery: a task's process found still running, or the exit code of one that ended meanwhile.
FoundProcess = Process | int


@final
class BuiltinExecutors:
    """Runs command tasks and task groups inside the agent, one process group per task."""

    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self._runners: dict[tuple[str, str], Runner] = {}
        self.containers = context.containers  # shared with custom executors
        self._probe_launcher = Launcher(spawn_threads=2)  # check commands: not tasks, so not checkpointed

    def run_task(self, framework: FrameworkState, task: TaskInfo) -> None:
        """Start a command task under a command executor named after it."""
        assert task.command is not None
        info = ExecutorInfo(
            executor_id=ID(value=task.task_id.value),
            framework_id=framework.info.id,
            name=f"Command Executor (Task: {task.task_id.value})",
            source=task.task_id.value,
            command=task.command,
        )
        executor, user = self._create_executor(framework, info, ExecutorKind.COMMAND, task.command.user, [task])
        if executor is None:
            return
        record = executor.tasks[task.task_id.value]
        runs_dir = os.path.dirname(executor.directory)
        prepare = functools.partial(create_sandbox, runs_dir, executor.container_id, user)
        runner = self._command_task(framework, executor, record, executor.directory, user, prepare, on_exit=None)
        self._runners[(framework.framework_id, executor.executor_id)] = runner
        runner.start()

    def run_task_group(self, framework: FrameworkState, info: ExecutorInfo, group: TaskGroupInfo) -> None:
        """Start every task of a group; one failing kills the others."""
        executor, user = self._create_executor(framework, info, ExecutorKind.GROUP, None, group.tasks)
        if executor is None:
            return
        try:  # one sandbox per group, made here; each task's own directory is made as it launches
            create_sandbox(os.path.dirname(executor.directory), executor.container_id, user)
        except LaunchError as exc:
            self._fail_all(executor, str(exc))
            return
        run = TaskGroupRun()
        self._runners[(framework.framework_id, executor.executor_id)] = run
        for task in group.tasks:
            record = executor.tasks[task.task_id.value]
            prepare = functools.partial(create_task_dir, executor.directory, record.task_id, user)
            directory = task_dir(executor.directory, record.task_id)
            command = self._command_task(framework, executor, record, directory, user, prepare, run.task_exited)
            run.add(record.task_id, command)
        run.start()

    def recover(self, framework: FrameworkState, executor: ExecutorState, find: Callable[[str], FoundProcess]) -> None:
        """Reattach to a recovered command executor or task group: watch what runs, report what ended.

        ``find`` maps a task's working directory to its running process, or to the exit code it left.
        """
        grouped = executor.kind is ExecutorKind.GROUP
        group = TaskGroupRun() if grouped else None
        commands: dict[str, CommandTask] = {}
        ended: list[TaskState] = []
        for record in [task for task in executor.tasks.values() if not task.terminal]:
            directory = task_dir(executor.directory, record.task_id) if grouped else executor.directory
            found = find(directory)
            if isinstance(found, int):
                ended.append(self._report_ended(record, executor, found))
                continue
            self._context.launcher.reattach(directory, found)
            on_exit = group.task_exited if group is not None else None
            command = self._command_task(framework, executor, record, directory, None, None, on_exit, recovered=True)
            commands[record.task_id] = command
        self._resume(framework, executor, group, commands, ended)
        for task_id, command in commands.items():
            task = executor.tasks.get(task_id)
            if task is not None and task.state == "TASK_KILLING":
                command.kill()  # the kill was under way when the agent died: finish it

    def _resume(
        self,
        framework: FrameworkState,
        executor: ExecutorState,
        group: TaskGroupRun | None,
        commands: dict[str, CommandTask],
        ended: list[TaskState],
    ) -> None:
        key = (framework.framework_id, executor.executor_id)
        if group is None and commands:
            self._runners[key] = command = next(iter(commands.values()))
            command.start()
        elif group is not None and commands:
            for task_id, command in commands.items():
                group.add(task_id, command)
            self._runners[key] = group
            group.start()
            if any(state in ("TASK_FAILED", "TASK_KILLED") for state in ended):
                group.kill()  # one of its tasks failed while the agent was down: the group goes with it
        self._maybe_ended(framework.framework_id, executor)

    def _report_ended(self, record: TaskRecord, executor: ExecutorState, returncode: int) -> TaskState:
        state: TaskState = "TASK_FINISHED" if returncode == 0 else "TASK_FAILED"
        if record.state == "TASK_KILLING":
            state = "TASK_KILLED"
        self._context.reporter.report(record, executor, state, message=describe_exit(returncode))
        return state

    def kill_task(self, executor: ExecutorState, task_id: str, kill_policy: KillPolicy | None) -> None:
        """Kill a task (a group's task takes its whole group with it, as Mesos's default executor does)."""
        runner = self._runners.get((executor.framework_id, executor.executor_id))
        if runner is not None:
            runner.kill(kill_policy)

    def shutdown_executor(self, executor: ExecutorState) -> None:
        """Kill every task of the executor with its grace period."""
        self.kill_task(executor, "", None)

    def destroy_all(self) -> None:
        """SIGKILL every task group at once (agent shutdown)."""
        for runner in self._runners.values():
            runner.destroy()

    async def wait_all(self) -> None:
        """Wait until every task the agent started has exited."""
        tasks = [
            command
            for runner in list(self._runners.values())
            for command in (runner.tasks.values() if isinstance(runner, TaskGroupRun) else [runner])
        ]
        await asyncio.gather(*(command.wait() for command in tasks))

    def _create_executor(
        self,
        framework: FrameworkState,
        info: ExecutorInfo,
        kind: ExecutorKind,
        command_user: str | None,
        tasks: list[TaskInfo],
    ) -> tuple[ExecutorState | None, UserIds | None]:
        """Records for the executor and its tasks, and its sandbox; None after reporting a failure."""
        context = self._context
        executor = ExecutorState(info, framework.framework_id, kind, container_id="", directory="")
        context.state.add_executor(executor)
        user_name = command_user or framework.info.user
        for task in tasks:
            context.state.add_task(executor, TaskRecord(task, framework.framework_id, executor.executor_id, user_name))
        try:
            user = context.resolve_user(command_user, framework)
        except NotFound as exc:
            self._fail_all(executor, str(exc))
            return None, None
        executor.container_id, _, executor.directory = context.plan_container(
            framework.framework_id, executor.executor_id
        )
        return executor, user

    def _fail_all(self, executor: ExecutorState, message: str) -> None:
        for record in list(executor.tasks.values()):
            self._fail(record, executor, message)
        executor.exited = True
        self._context.executor_ended(executor)

    def _command_task(
        self,
        framework: FrameworkState,
        executor: ExecutorState,
        record: TaskRecord,
        sandbox: str,
        user: UserIds | None,
        prepare: Callable[[], object] | None,
        on_exit: ExitCallback | None,
        *,
        recovered: bool = False,
    ) -> CommandTask:
        assert record.info.command is not None
        argv, program = command_argv(record.info.command)
        spec = LaunchSpec(
            argv=argv,
            env=self._task_environment(framework, executor, record, sandbox),
            cwd=sandbox,
            stdout_path=os.path.join(sandbox, "stdout"),
            stderr_path=os.path.join(sandbox, "stderr"),
            user=user,
            # Only a checkpointing framework's tasks are recovered, so only they pay for the wrapper.
            exit_status_path=os.path.join(sandbox, EXIT_STATUS_FILE) if framework.info.checkpoint else None,
            executable=program,
        )
        report: Report = functools.partial(self._context.reporter.report, record, executor)
        checks = TaskChecks(record, executor, self._context.reporter, ProbeContext(self._probe_launcher, spec))
        if checks.needed:  # health check, check or max_completion_time: its updates carry their results
            report = checks.report
        if recovered:
            report = _without_repeats(report, record)
        uris = record.info.command.uris
        fetch = functools.partial(self._fetch_into, prepare, uris, sandbox, user) if uris and not recovered else None
        launch_spec, launch_prepare, container = self._isolating(
            executor, spec, None if fetch else prepare, recovered, sole=on_exit is None
        )
        command = CommandTask(
            launch_spec,
            report,
            self._context.launcher,
            prepare=launch_prepare,  # with URIs, the fetch step makes the sandbox first
            kill_policy=record.info.kill_policy,
            announce_killing=framework.has_capability("TASK_KILLING_STATE"),
            on_exit=functools.partial(self._task_exited, framework.framework_id, executor, on_exit),
            fetch=fetch,
            container=container,
        )
        checks.attach(command)
        return command

    def _isolating(
        self,
        executor: ExecutorState,
        spec: LaunchSpec,
        prepare: Callable[[], object] | None,
        recovered: bool,
        sole: bool,
    ) -> tuple[LaunchSpec, Callable[[], object] | None, ContainerHooks | None]:
        """The task's launch in its container: the prelude, the set-up before the spawn, the runner's hooks.

        ``sole``: the task is its container's only process (not one of a group's).

        Raises:
            LaunchError: the container cannot be isolated.
        """
        container_id = executor.container_id
        limits = limits_of([resource for task in executor.tasks.values() for resource in task.info.resources])
        if recovered:  # already running in its container: measure, watch and release it again
            return spec, prepare, self.containers.adopt(container_id, limits, self._container_limited)
        hooks = self.containers.hooks(container_id, self._container_limited)
        isolated = self.containers.launch_spec(spec, container_id, sole=sole)
        return isolated, self.containers.preparing(container_id, limits, prepare), hooks

    async def _fetch_into(
        self, prepare: Callable[[], object] | None, uris: list[CommandURI], sandbox: str, user: UserIds | None
    ) -> None:
        """Make the sandbox, then fetch the task's URIs into it (FetchError is a LaunchError: TASK_FAILED)."""
        if prepare is not None:
            await asyncio.get_running_loop().run_in_executor(None, prepare)
        await self._context.fetcher.fetch(uris, sandbox, user)

    def _task_environment(
        self, framework: FrameworkState, executor: ExecutorState, record: TaskRecord, sandbox: str
    ) -> dict[str, str]:
        command = record.info.command or CommandInfo()
        context = self._context.executor_context(framework, executor.executor_id, sandbox)
        env = executor_environment(self._context.base_env, context, None)
        env["MESOS_TASK_ID"] = record.task_id
        env["MESOS_CONTAINER_IP"] = self._context.config.ip
        env.update(command_variables(command.environment))  # the task's own variables win
        return env

    def _task_exited(
        self,
        framework_id: str,
        executor: ExecutorState,
        group_callback: ExitCallback | None,
        command: CommandTask,
        state: TaskState,
    ) -> None:
        if group_callback is not None:
            group_callback(command, state)
        self._maybe_ended(framework_id, executor)

    def _maybe_ended(self, framework_id: str, executor: ExecutorState) -> None:
        runner = self._runners.get((framework_id, executor.executor_id))
        finished = runner is None or (
            runner.done if isinstance(runner, TaskGroupRun) else runner.final_state is not None
        )
        if finished and not executor.exited:
            self._runners.pop((framework_id, executor.executor_id), None)
            executor.exited = True
            self._context.executor_ended(executor)
            self.containers.release(executor.container_id)

    def _container_limited(self, container_id: str, limitation: Limitation) -> None:
        # A container past a limit: its tasks end TASK_FAILED with the limitation (a group goes whole).
        for (framework_id, executor_id), runner in list(self._runners.items()):
            executor = self._context.state.executor(framework_id, executor_id)
            if executor is not None and executor.container_id == container_id:
                for command in runner.tasks.values() if isinstance(runner, TaskGroupRun) else [runner]:
                    command.limit(limitation)

    def _fail(self, record: TaskRecord, executor: ExecutorState, message: str) -> None:
        self._context.reporter.report(
            record,
            executor,
            "TASK_FAILED",
            source="SOURCE_AGENT",
            message=message,
            reason="REASON_CONTAINER_LAUNCH_FAILED",
        )


def _without_repeats(report: Report, record: TaskRecord) -> Report:
    """A reattached task's runner reports STARTING and RUNNING again; the framework has seen them."""

    def report_news(
        state: TaskState, *, source: Source = "SOURCE_EXECUTOR", message: str | None = None, reason: str | None = None
    ) -> None:
        if state in _PROGRESS and _PROGRESS.get(record.state, len(_PROGRESS)) >= _PROGRESS[state]:
            return
        report(state, source=source, message=message, reason=reason)

    return report_news
