"""Reading the checkpoint at start: what the previous run of this agent left, and what to do with it.

:func:`replay` folds the journal into the records that were live when the agent died (a pure function);
:func:`decide` picks what Mesos would do with them (``apache/mesos:docs/agent-recovery.md``):

- no checkpoint: a new agent;
- another boot id: the machine restarted, so nothing of the old agent can still run (and its pids may now
  be other processes): a new agent, the old tasks reported lost;
- an AgentInfo that differs from this start's (hostname, port, resources, attributes): refused with
  ``--strict``, else a new agent after killing what is found;
- ``--recover=cleanup``: kill what is found, report it, and start as a new agent;
- otherwise reconnect: the same agent id, its tasks and executors reattached.

:func:`find_process` tells whether a journaled pid is still the process the agent started: a session
leader whose working directory is the container's, so a pid reused by another process is not mistaken
for it (Mesos's ``RebootWithExecutorPidReused``).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import final

from butte.agent.checkpoint import (
    AckEntry,
    AgentCheckpoint,
    Entry,
    ExecutorDone,
    ExecutorEntry,
    FrameworkDone,
    FrameworkEntry,
    ProcessEntry,
    TaskDone,
    TaskEntry,
    UpdateEntry,
)
from butte.agent.state import TaskRecord
from butte.wire.base import encode
from butte.wire.mesos import TERMINAL_STATES, AgentInfo, FrameworkInfo, TaskStatus

TaskKey = tuple[str, str]  # (framework id, task id)


class RecoveryMode(enum.Enum):
    """What the agent does with its checkpoint at start."""

    NEW = "new"  # nothing to recover
    RECONNECT = "reconnect"  # same id; reattach to what runs
    CLEANUP = "cleanup"  # kill what runs, report it, new id
    REBOOTED = "rebooted"  # nothing runs any more; report it lost, new id
    REFUSE = "refuse"  # incompatible AgentInfo under --strict: do not start


@final
@dataclass(slots=True)
class RecoveredExecutor:
    """An executor that was live, with its live tasks."""

    entry: ExecutorEntry
    tasks: dict[str, TaskRecord] = field(default_factory=dict)


@final
@dataclass(slots=True)
class Recovered:
    """The live records of the previous run, as its journal left them."""

    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)
    executors: dict[tuple[str, str], RecoveredExecutor] = field(default_factory=dict)
    # Updates not yet acknowledged, per task, oldest first: they are sent again.
    streams: dict[TaskKey, list[TaskStatus]] = field(default_factory=dict)
    processes: dict[str, ProcessEntry] = field(default_factory=dict)

    def live_tasks(self) -> list[TaskRecord]:
        """Every task of a live executor."""
        return [task for executor in self.executors.values() for task in executor.tasks.values()]


@final
@dataclass(frozen=True, slots=True)
class Decision:
    """The recovery mode and why it was chosen (logged at start)."""

    mode: RecoveryMode
    reason: str


def decide(
    checkpoint: AgentCheckpoint | None, boot_id: str, info: AgentInfo, *, recover: str, strict: bool
) -> Decision:
    """What to do with a checkpoint, as Mesos decides it."""
    if checkpoint is None:
        return Decision(RecoveryMode.NEW, "no checkpointed agent")
    if checkpoint.boot_id != boot_id:
        return Decision(RecoveryMode.REBOOTED, f"the host rebooted (boot id {checkpoint.boot_id} -> {boot_id})")
    mismatch = agent_info_mismatch(checkpoint.info, info)
    if mismatch is not None:
        reason = f"the checkpointed agent info differs from this one: {mismatch}"
        return Decision(RecoveryMode.REFUSE if strict else RecoveryMode.CLEANUP, reason)
    if recover == "cleanup":
        return Decision(RecoveryMode.CLEANUP, "--recover=cleanup")
    return Decision(RecoveryMode.RECONNECT, f"reconnecting as agent {checkpoint.agent_id}")


def agent_info_mismatch(old: AgentInfo, new: AgentInfo) -> str | None:
    """The first field in which two AgentInfos differ (Mesos's ``equal`` reconfiguration policy), or None."""
    for name in ("hostname", "port", "resources", "attributes"):
        before, after = getattr(old, name), getattr(new, name)
        if encode(before) != encode(after):
            return f"{name} was {encode(before).decode()}, now {encode(after).decode()}"
    return None


def replay(entries: Iterable[Entry]) -> Recovered:
    """Fold journal entries into the records live at the end."""
    recovered = Recovered()
    tasks: dict[TaskKey, TaskRecord] = {}
    for entry in entries:
        _apply(recovered, tasks, entry)
    return recovered


def _apply(recovered: Recovered, tasks: dict[TaskKey, TaskRecord], entry: Entry) -> None:
    if isinstance(entry, FrameworkEntry) and entry.info.id is not None:
        recovered.frameworks[entry.info.id.value] = entry.info
    elif isinstance(entry, ExecutorEntry):
        _drop_executor(recovered, tasks, entry.framework_id, entry.info.executor_id.value)
        recovered.executors[(entry.framework_id, entry.info.executor_id.value)] = RecoveredExecutor(entry)
    elif isinstance(entry, TaskEntry):
        _add_task(recovered, tasks, entry)
    elif isinstance(entry, UpdateEntry):
        key = (entry.framework_id, entry.status.task_id.value)
        if key in tasks:
            tasks[key].record(entry.status)
        recovered.streams.setdefault(key, []).append(entry.status)
    elif isinstance(entry, AckEntry):
        _acknowledge(recovered, entry)
    elif isinstance(entry, ProcessEntry):
        recovered.processes[entry.cwd] = entry
    elif isinstance(entry, TaskDone):
        _drop_task(recovered, tasks, (entry.framework_id, entry.task_id))
    elif isinstance(entry, ExecutorDone):
        _drop_executor(recovered, tasks, entry.framework_id, entry.executor_id)
    elif isinstance(entry, FrameworkDone):
        _drop_framework(recovered, tasks, entry.framework_id)


def _add_task(recovered: Recovered, tasks: dict[TaskKey, TaskRecord], entry: TaskEntry) -> None:
    executor = recovered.executors.get((entry.framework_id, entry.executor_id))
    if executor is None:
        return
    record = TaskRecord(entry.info, entry.framework_id, entry.executor_id, entry.user)
    for status in entry.statuses:
        record.record(status)
    executor.tasks[record.task_id] = tasks[(entry.framework_id, record.task_id)] = record


def _acknowledge(recovered: Recovered, entry: AckEntry) -> None:
    key = (entry.framework_id, entry.task_id)
    stream = recovered.streams.get(key)
    if not stream or stream[0].uuid != entry.uuid:
        return
    acked = stream.pop(0)
    if acked.state in TERMINAL_STATES or not stream:
        del recovered.streams[key]  # a terminal ack closes the stream, as in the live manager


def _drop_task(recovered: Recovered, tasks: dict[TaskKey, TaskRecord], key: TaskKey) -> None:
    task = tasks.pop(key, None)
    recovered.streams.pop(key, None)
    if task is not None:
        executor = recovered.executors.get((task.framework_id, task.executor_id))
        if executor is not None:
            executor.tasks.pop(task.task_id, None)


def _drop_executor(recovered: Recovered, tasks: dict[TaskKey, TaskRecord], framework_id: str, executor_id: str) -> None:
    executor = recovered.executors.pop((framework_id, executor_id), None)
    if executor is not None:
        for task_id in executor.tasks:
            tasks.pop((framework_id, task_id), None)


def _drop_framework(recovered: Recovered, tasks: dict[TaskKey, TaskRecord], framework_id: str) -> None:
    recovered.frameworks.pop(framework_id, None)
    for fid, executor_id in [key for key in recovered.executors if key[0] == framework_id]:
        _drop_executor(recovered, tasks, fid, executor_id)
    for key in [key for key in recovered.streams if key[0] == framework_id]:
        del recovered.streams[key]


def find_process(entry: ProcessEntry | None) -> bool:
    """Whether the journaled process still runs and is the one the agent started (not a reused pid)."""
    if entry is None:
        return False
    try:
        if os.getsid(entry.pid) != entry.pid:
            return False
        cwd = os.readlink(f"/proc/{entry.pid}/cwd")
        # The kernel gives the resolved path; resolve ours only when they differ (a symlinked work dir).
        return cwd == entry.cwd or cwd == os.path.realpath(entry.cwd)
    except OSError:  # gone, a zombie, or not ours to look at
        return False
