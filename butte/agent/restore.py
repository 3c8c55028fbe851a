"""Carrying out a recovery decision at agent start (see ``recovery`` for the decision itself).

Runs once, on the event loop, after the agent listens (so executors can resubscribe) and before it
registers. Reconnecting rebuilds the records and the unacknowledged update streams from the journal,
reattaches to the processes still running, reports the tasks whose processes ended meanwhile with the
exit status their wrapper left, and kills every process it does not recover. Every other mode kills what
it finds (except after a reboot, when a journaled pid is some other process), reports the checkpointed
tasks, and starts a new agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from butte.agent.builtin import BuiltinExecutors, FoundProcess
from butte.agent.checkpoint import (
    AgentCheckpoint,
    CheckpointError,
    Journal,
    ProcessEntry,
    current_boot_id,
    discard,
    read_agent,
    read_journal,
)
from butte.agent.checkpointer import Checkpointer
from butte.agent.context import AgentContext
from butte.agent.executors import CustomExecutors
from butte.agent.recovery import Decision, Recovered, RecoveredExecutor, RecoveryMode, decide, find_process, replay
from butte.agent.state import ExecutorKind, ExecutorState
from butte.agent.updates import UpdateChannel
from butte.containerizer.process import adopt_process, read_exit_status
from butte.core.errors import ButteError
from butte.wire.base import ID
from butte.wire.mesos import TaskState

log = logging.getLogger(__name__)


class RecoveryRefused(ButteError):
    """The checkpoint cannot be recovered and ``--strict`` forbids starting anyway."""


@final
@dataclass(frozen=True, slots=True)
class RecoverySnapshot:
    """What the start-up recovery did."""

    mode: str
    reason: str
    recovered_tasks: int
    adopted_processes: int
    killed_processes: int
    duration_s: float


def load(context: AgentContext, boot_id: str) -> tuple[Decision, AgentCheckpoint | None, Recovered]:
    """Read the checkpoint and decide what to do with it."""
    config = context.config
    try:
        checkpoint = read_agent(config.work_dir)
        recovered = replay(read_journal(config.work_dir))
    except CheckpointError as exc:
        if config.strict:
            return (
                Decision(RecoveryMode.REFUSE, f"{exc} (start with --strict=false to start afresh)"),
                None,
                Recovered(),
            )
        log.error("Ignoring an unreadable checkpoint: %s", exc)
        return Decision(RecoveryMode.NEW, f"unreadable checkpoint: {exc}"), None, Recovered()
    decision = decide(checkpoint, boot_id, context.agent_info, recover=config.recover, strict=config.strict)
    return decision, checkpoint, recovered


@final
class Restorer:
    """Applies a :class:`Decision` to the agent's records and runners; then journals from there on."""

    def __init__(
        self, context: AgentContext, channel: UpdateChannel, builtin: BuiltinExecutors, custom: CustomExecutors
    ) -> None:
        self._context = context
        self._channel = channel
        self._builtin = builtin
        self._custom = custom
        self._adopted = 0
        self._killed = 0

    def run(self) -> tuple[Checkpointer, RecoverySnapshot]:
        """Recover, then start journaling.

        Raises:
            RecoveryRefused: the checkpoint is unusable under ``--strict``.
            CheckpointError: the journal cannot be written.
        """
        started = time.perf_counter()
        decision, checkpoint, recovered = load(self._context, current_boot_id())
        log.info("Recovery: %s (%s)", decision.mode.value, decision.reason)
        if decision.mode is RecoveryMode.REFUSE:
            raise RecoveryRefused(f"Refusing to start: {decision.reason}")
        checkpointer = self._open_journal()
        if decision.mode is RecoveryMode.RECONNECT and checkpoint is not None:
            self._reconnect(checkpoint, recovered, checkpointer)
        else:
            self._start_afresh(decision, recovered, checkpointer)
        snapshot = RecoverySnapshot(
            decision.mode.value,
            decision.reason,
            len(recovered.live_tasks()) if decision.mode is RecoveryMode.RECONNECT else 0,
            self._adopted,
            self._killed,
            time.perf_counter() - started,
        )
        log.info("Recovered %d tasks in %.1f ms", snapshot.recovered_tasks, snapshot.duration_s * 1000)
        return checkpointer, snapshot

    def _open_journal(self) -> Checkpointer:
        journal = Journal(self._context.config.work_dir, asyncio.get_running_loop().call_soon)
        return Checkpointer(journal, self._context.state, self._channel.manager.pending)

    def _attach(self, checkpointer: Checkpointer) -> None:
        self._context.state.observers.append(checkpointer)
        self._channel.log = checkpointer
        self._context.launcher.on_started = checkpointer.process_started

    def _start_afresh(self, decision: Decision, recovered: Recovered, checkpointer: Checkpointer) -> None:
        if decision.mode is not RecoveryMode.REBOOTED:  # after a reboot the old pids name other processes
            self._kill_all(recovered.processes.values())
        discard(self._context.config.work_dir)
        checkpointer.compact()  # an empty journal: the new agent has nothing yet
        self._attach(checkpointer)
        if decision.mode is RecoveryMode.REBOOTED:
            self._report_gone(recovered, "TASK_LOST", "The agent's host rebooted")
        elif decision.mode is RecoveryMode.CLEANUP:
            self._report_gone(recovered, "TASK_KILLED", f"Killed when the agent restarted: {decision.reason}")

    def _report_gone(self, recovered: Recovered, state: TaskState, message: str) -> None:
        """Send what the old agent had not delivered, then the end of every task it left unfinished."""
        reporter = self._context.reporter
        for (framework_id, _), statuses in recovered.streams.items():
            for status in statuses:
                reporter.send_untracked(framework_id, status)
        for task in recovered.live_tasks():
            if not task.terminal:
                status = reporter.new_status(
                    task.task_id, state, executor_id=task.executor_id, message=message, reason="REASON_AGENT_RESTARTED"
                )
                reporter.send_untracked(task.framework_id, status)

    def _kill_all(self, entries: Iterable[ProcessEntry]) -> None:
        for entry in entries:
            if find_process(entry):
                self._kill(entry.pid)

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            self._killed += 1

    def _reconnect(self, checkpoint: AgentCheckpoint, recovered: Recovered, checkpointer: Checkpointer) -> None:
        self._context.agent_info.id = ID(value=checkpoint.agent_id)
        executors = self._restore_records(recovered)
        found = self._find_processes(recovered, executors, checkpointer)
        checkpointer.compact()
        self._attach(checkpointer)
        for executor in executors:
            framework = self._context.state.frameworks[executor.framework_id]
            if executor.kind is ExecutorKind.CUSTOM:
                process = found.get(executor.directory)
                self._custom.recover(framework, executor, process if not isinstance(process, int) else None)
            else:
                self._builtin.recover(framework, executor, lambda cwd: found.get(cwd, read_exit_status(None)))

    def _restore_records(self, recovered: Recovered) -> list[ExecutorState]:
        state = self._context.state
        for info in recovered.frameworks.values():
            state.upsert_framework(info)
        executors = [self._restore_executor(entry) for entry in recovered.executors.values()]
        now = time.time()
        for (framework_id, _), statuses in recovered.streams.items():
            if framework_id in state.frameworks:
                for status in statuses:
                    self._channel.manager.update(framework_id, status, now)  # paused: sent once registered
        return [executor for executor in executors if executor is not None]

    def _restore_executor(self, recovered: RecoveredExecutor) -> ExecutorState | None:
        entry, state = recovered.entry, self._context.state
        if entry.framework_id not in state.frameworks:
            return None
        executor = ExecutorState(
            entry.info, entry.framework_id, ExecutorKind(entry.kind), entry.container_id, entry.directory
        )
        state.frameworks[entry.framework_id].executors[executor.executor_id] = executor
        for task in recovered.tasks.values():
            state.add_task(executor, task)
        return executor

    def _find_processes(
        self, recovered: Recovered, executors: list[ExecutorState], checkpointer: Checkpointer
    ) -> dict[str, FoundProcess]:
        """Adopt the processes of recovered containers; the exit code of those that ended; kill the rest."""
        wanted = {executor.directory for executor in executors}
        loop = asyncio.get_running_loop()
        found: dict[str, FoundProcess] = {}
        for cwd, entry in recovered.processes.items():
            alive = find_process(entry)
            if _container_of(cwd) not in wanted:
                if alive:
                    self._kill(entry.pid)  # not recovered (e.g. its framework does not checkpoint)
                continue
            process = adopt_process(entry.pid, entry.exit_status_path, loop) if alive else None
            if process is None:
                found[cwd] = read_exit_status(entry.exit_status_path)
                continue
            found[cwd] = process
            checkpointer.process_adopted(entry)
            self._adopted += 1
        return found


def _container_of(cwd: str) -> str:
    """The sandbox a process ran in: a group task runs in ``<sandbox>/tasks/<task id>``."""
    parent = os.path.dirname(cwd)
    return os.path.dirname(parent) if os.path.basename(parent) == "tasks" else cwd
