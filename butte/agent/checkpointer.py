"""Keeps the agent's journal in step with its live records, as Mesos checkpoints as it goes.

Only frameworks with ``FrameworkInfo.checkpoint`` set have their executors, tasks and updates journaled
(Mesos recovers only those); the pid of every process is journaled, so that a restarted agent can kill
the processes it does not recover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import final

from butte.agent.checkpoint import (
    COMPACT_AFTER_ENTRIES,
    AckEntry,
    Entry,
    ExecutorDone,
    ExecutorEntry,
    FrameworkDone,
    FrameworkEntry,
    Journal,
    ProcessEntry,
    TaskDone,
    TaskEntry,
    UpdateEntry,
)
from butte.agent.state import AgentState, ExecutorState, FrameworkState, TaskRecord
from butte.containerizer.launcher import LaunchSpec
from butte.containerizer.sandbox import task_dir
from butte.wire.mesos import TaskStatus

PendingUpdates = Callable[[str, str], tuple[TaskStatus, ...]]


@final
class Checkpointer:
    """The agent's :class:`StateObserver` and :class:`UpdateLog`: turns changes into journal entries."""

    def __init__(self, journal: Journal, state: AgentState, pending: PendingUpdates) -> None:
        self.journal = journal
        self._state = state
        self._pending = pending
        self._journaled_frameworks: set[str] = set()
        self._processes: dict[str, ProcessEntry] = {}

    def _checkpointed(self, framework_id: str) -> bool:
        framework = self._state.frameworks.get(framework_id)
        return framework is not None and bool(framework.info.checkpoint)

    # ---- StateObserver ----

    def executor_added(self, executor: ExecutorState) -> None:
        """Journal a checkpointing framework's executor (and the framework, the first time)."""
        if not self._checkpointed(executor.framework_id):
            return
        if executor.framework_id not in self._journaled_frameworks:
            self._journaled_frameworks.add(executor.framework_id)
            self.journal.append(FrameworkEntry(info=self._state.frameworks[executor.framework_id].info))
        # Deferred: the runner fills in the container id and sandbox right after adding the executor.
        self.journal.append(lambda: executor_entry(executor))

    def task_added(self, task: TaskRecord) -> None:
        """Journal a task of a checkpointing framework."""
        if self._checkpointed(task.framework_id):
            self.journal.append(task_entry(task, ()))

    def task_completed(self, task: TaskRecord) -> None:
        """A task's terminal update was acknowledged."""
        if self._checkpointed(task.framework_id):
            self.journal.append(TaskDone(framework_id=task.framework_id, task_id=task.task_id))

    def executor_completed(self, executor: ExecutorState) -> None:
        """An executor is history; so are its processes."""
        if executor.directory:
            # A command task runs in its executor's sandbox, a group's tasks each in their own task directory.
            self._processes.pop(executor.directory, None)
            for task_id in [*executor.tasks, *(task.task_id for task in executor.completed_tasks)]:
                self._processes.pop(task_dir(executor.directory, task_id), None)
        if self._checkpointed(executor.framework_id):
            self.journal.append(ExecutorDone(framework_id=executor.framework_id, executor_id=executor.executor_id))

    def framework_removed(self, framework: FrameworkState) -> None:
        """A framework was shut down here."""
        if framework.info.checkpoint:
            self._journaled_frameworks.discard(framework.framework_id)
            self.journal.append(FrameworkDone(framework_id=framework.framework_id))

    # ---- UpdateLog ----

    def update_queued(self, framework_id: str, status: TaskStatus) -> None:
        """Journal an update before it is first sent."""
        if self._checkpointed(framework_id):
            self.journal.append(UpdateEntry(framework_id=framework_id, status=status))

    def update_acknowledged(self, framework_id: str, task_id: str, uuid: str) -> None:
        """Journal an acknowledgement, so a restarted agent does not send that update again."""
        if self._checkpointed(framework_id):
            self.journal.append(AckEntry(framework_id=framework_id, task_id=task_id, uuid=uuid))

    def flush(self) -> None:
        """Write what is queued; rewrite the journal when it has grown large."""
        self.journal.flush()
        if self.journal.entries_written > COMPACT_AFTER_ENTRIES:
            self.compact()

    # ---- processes and rewrites ----

    def process_started(self, spec: LaunchSpec, pid: int) -> None:
        """Journal a new process (of any framework) by its working directory."""
        entry = ProcessEntry(cwd=spec.cwd, pid=pid, exit_status_path=spec.exit_status_path)
        self._processes[spec.cwd] = entry
        self.journal.append(entry)

    def process_adopted(self, entry: ProcessEntry) -> None:
        """A process found alive at recovery is still ours."""
        self._processes[entry.cwd] = entry

    def compact(self) -> None:
        """Replace the journal by the entries the live state needs.

        Raises:
            CheckpointError: the new journal cannot be written.
        """
        self.journal.rewrite(self.live_entries())
        self._journaled_frameworks = {fid for fid in self._state.frameworks if self._checkpointed(fid)}

    def live_entries(self) -> Iterator[Entry]:
        """What a recovery needs: checkpointed frameworks, executors, tasks, pending updates; all processes."""
        for framework in self._state.frameworks.values():
            if not framework.info.checkpoint:
                continue
            yield FrameworkEntry(info=framework.info)
            for executor in framework.executors.values():
                yield executor_entry(executor)
                for task in executor.tasks.values():
                    pending = self._pending(task.framework_id, task.task_id)
                    yield task_entry(task, pending)
                    yield from (UpdateEntry(framework_id=task.framework_id, status=status) for status in pending)
        yield from self._processes.values()


def executor_entry(executor: ExecutorState) -> ExecutorEntry:
    """The journal entry of an executor."""
    return ExecutorEntry(
        framework_id=executor.framework_id,
        kind=executor.kind.value,
        container_id=executor.container_id,
        directory=executor.directory,
        info=executor.info,
    )


def task_entry(task: TaskRecord, pending: tuple[TaskStatus, ...]) -> TaskEntry:
    """The journal entry of a task, with its statuses except those still ``pending`` acknowledgement."""
    unacked = {status.uuid for status in pending}
    statuses = [status for status in task.statuses if status.uuid not in unacked]
    return TaskEntry(
        framework_id=task.framework_id, executor_id=task.executor_id, info=task.info, user=task.user, statuses=statuses
    )
