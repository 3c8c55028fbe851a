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
from butte.agent.state import ExecutorKind, ExecutorState, FrameworkState, TaskRecord
from butte.containerizer.environment import command_variables, executor_environment
from butte.containerizer.launcher import LaunchError, LaunchSpec, UserIds
from butte.containerizer.sandbox import create_sandbox, create_task_dir, task_dir
from butte.core.errors import NotFound
from butte.executor.command import CommandTask, command_argv
from butte.executor.group import TaskGroupRun
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, ExecutorInfo, KillPolicy, TaskGroupInfo, TaskInfo, TaskState

log = logging.getLogger(__name__)

Runner = CommandTask | TaskGroupRun
ExitCallback = Callable[[CommandTask, TaskState], None]


@final
class BuiltinExecutors:
    """Runs command tasks and task groups inside the agent, one process group per task."""

    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self._runners: dict[tuple[str, str], Runner] = {}

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
        prepare: Callable[[], object],
        on_exit: ExitCallback | None,
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
            executable=program,
        )
        report = functools.partial(self._context.reporter.report, record, executor)
        return CommandTask(
            spec,
            report,
            self._context.launcher,
            prepare=prepare,
            kill_policy=record.info.kill_policy,
            announce_killing=framework.has_capability("TASK_KILLING_STATE"),
            on_exit=functools.partial(self._task_exited, framework.framework_id, executor, on_exit),
        )

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

    def _fail(self, record: TaskRecord, executor: ExecutorState, message: str) -> None:
        self._context.reporter.report(
            record,
            executor,
            "TASK_FAILED",
            source="SOURCE_AGENT",
            message=message,
            reason="REASON_CONTAINER_LAUNCH_FAILED",
        )
