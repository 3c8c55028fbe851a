"""The agent's checkpoint: journal round trips, torn writes, replay, and the recovery decision."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from butte.agent.checkpoint import (
    AckEntry,
    AgentCheckpoint,
    CheckpointError,
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
    read_agent,
    read_journal,
    write_agent,
)
from butte.agent.recovery import RecoveryMode, agent_info_mismatch, decide, find_process, replay
from butte.wire.base import ID
from butte.wire.mesos import AgentInfo, CommandInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus

FID = "f1"


def framework() -> FrameworkEntry:
    return FrameworkEntry(info=FrameworkInfo(user="u", name="n", id=ID(value=FID), checkpoint=True))


def executor(executor_id: str = "e1") -> ExecutorEntry:
    info = ExecutorInfo(executor_id=ID(value=executor_id), command=CommandInfo(value="true"))
    return ExecutorEntry(
        framework_id=FID, kind="command", container_id="c1", directory=f"/sandbox/{executor_id}", info=info
    )


def task(task_id: str = "t1", executor_id: str = "e1") -> TaskEntry:
    info = TaskInfo(name=task_id, task_id=ID(value=task_id), agent_id=ID(value="a1"))
    return TaskEntry(framework_id=FID, executor_id=executor_id, info=info)


def update(task_id: str, state: TaskState, uuid: str) -> UpdateEntry:
    return UpdateEntry(framework_id=FID, status=TaskStatus(task_id=ID(value=task_id), state=state, uuid=uuid))


def ack(task_id: str, uuid: str) -> AckEntry:
    return AckEntry(framework_id=FID, task_id=task_id, uuid=uuid)


def write_journal(tmp_path: Path, entries: list[Entry]) -> None:
    deferred: list[Callable[[], None]] = []
    journal = Journal(str(tmp_path), deferred.append)
    for entry in entries:
        journal.append(entry)
    assert len(deferred) == 1  # one flush per loop pass, however many entries
    deferred[0]()
    journal.close()


def test_journal_round_trip_in_one_write(tmp_path: Path) -> None:
    entries: list[Entry] = [framework(), executor(), task(), update("t1", "TASK_RUNNING", "u1"), ack("t1", "u1")]
    write_journal(tmp_path, entries)
    assert list(read_journal(str(tmp_path))) == entries


def test_deferred_entries_are_made_at_flush_time(tmp_path: Path) -> None:
    deferred: list[Callable[[], None]] = []
    journal = Journal(str(tmp_path), deferred.append)
    holder = {"directory": "unset"}
    journal.append(lambda: ProcessEntry(cwd=holder["directory"], pid=1))
    holder["directory"] = "/filled/in/later"
    journal.flush()
    journal.close()
    assert list(read_journal(str(tmp_path))) == [ProcessEntry(cwd="/filled/in/later", pid=1)]


def test_a_torn_last_line_is_skipped_but_a_torn_middle_is_an_error(tmp_path: Path) -> None:
    write_journal(tmp_path, [framework(), executor()])
    path = tmp_path / "meta" / "journal"
    with path.open("ab") as handle:
        handle.write(b'{"k":"task","framework_id":"f1","exec')
    assert len(list(read_journal(str(tmp_path)))) == 2
    with path.open("ab") as handle:
        handle.write(b"\n" + path.read_bytes().splitlines()[0] + b"\n")
    with pytest.raises(CheckpointError):
        list(read_journal(str(tmp_path)))


def test_rewrite_replaces_the_journal(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), lambda flush: None)
    journal.append(framework())
    journal.rewrite([executor()])
    journal.append(task())
    journal.close()
    assert list(read_journal(str(tmp_path))) == [executor(), task()]


def test_agent_checkpoint_round_trip(tmp_path: Path) -> None:
    assert read_agent(str(tmp_path)) is None
    checkpoint = AgentCheckpoint(agent_id="a1", boot_id="b1", info=AgentInfo(hostname="h", port=5051))
    write_agent(str(tmp_path), checkpoint)
    assert read_agent(str(tmp_path)) == checkpoint
    (tmp_path / "meta" / "agent.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        read_agent(str(tmp_path))


def test_replay_keeps_unacknowledged_updates_and_drops_acknowledged_ones() -> None:
    recovered = replay(
        [
            framework(),
            executor(),
            task(),
            update("t1", "TASK_STARTING", "u1"),
            update("t1", "TASK_RUNNING", "u2"),
            ack("t1", "u1"),
            update("t1", "TASK_FINISHED", "u3"),
        ]
    )
    (record,) = recovered.live_tasks()
    assert record.state == "TASK_FINISHED"
    assert [s.uuid for s in recovered.streams[(FID, "t1")]] == ["u2", "u3"]


def test_replay_ignores_an_ack_that_is_not_the_head() -> None:
    recovered = replay([framework(), executor(), task(), update("t1", "TASK_RUNNING", "u1"), ack("t1", "other")])
    assert [s.uuid for s in recovered.streams[(FID, "t1")]] == ["u1"]


def test_replay_forgets_completed_tasks_executors_and_frameworks() -> None:
    done = replay(
        [
            framework(),
            executor(),
            task(),
            update("t1", "TASK_FINISHED", "u1"),
            ack("t1", "u1"),
            TaskDone(framework_id=FID, task_id="t1"),
        ]
    )
    assert done.live_tasks() == [] and done.streams == {}
    retired = replay([framework(), executor(), task(), ExecutorDone(framework_id=FID, executor_id="e1")])
    assert retired.executors == {}
    removed = replay(
        [framework(), executor(), task(), update("t1", "TASK_RUNNING", "u1"), FrameworkDone(framework_id=FID)]
    )
    assert (removed.frameworks, removed.executors, removed.streams) == ({}, {}, {})


def test_replay_keeps_the_latest_process_per_directory() -> None:
    recovered = replay([ProcessEntry(cwd="/s", pid=1), ProcessEntry(cwd="/s", pid=2)])
    assert recovered.processes["/s"].pid == 2


def test_decide_follows_mesos() -> None:
    info = AgentInfo(hostname="h", port=5051)
    checkpoint = AgentCheckpoint(agent_id="a1", boot_id="b1", info=info)
    assert decide(None, "b1", info, recover="reconnect", strict=True).mode is RecoveryMode.NEW
    assert decide(checkpoint, "b2", info, recover="reconnect", strict=True).mode is RecoveryMode.REBOOTED
    assert decide(checkpoint, "b1", info, recover="reconnect", strict=True).mode is RecoveryMode.RECONNECT
    assert decide(checkpoint, "b1", info, recover="cleanup", strict=True).mode is RecoveryMode.CLEANUP
    moved = AgentInfo(hostname="elsewhere", port=5051)
    assert decide(checkpoint, "b1", moved, recover="reconnect", strict=True).mode is RecoveryMode.REFUSE
    assert decide(checkpoint, "b1", moved, recover="reconnect", strict=False).mode is RecoveryMode.CLEANUP


def test_agent_info_mismatch_names_the_field() -> None:
    mismatch = agent_info_mismatch(AgentInfo(hostname="h", port=1), AgentInfo(hostname="h", port=2))
    assert mismatch is not None and mismatch.startswith("port")
    assert agent_info_mismatch(AgentInfo(hostname="h"), AgentInfo(hostname="h")) is None


def test_find_process_rejects_a_pid_that_is_not_the_journaled_one(tmp_path: Path) -> None:
    assert not find_process(None)
    assert not find_process(ProcessEntry(cwd=str(tmp_path), pid=os.getpid()))  # alive, but elsewhere
    assert not find_process(ProcessEntry(cwd=str(tmp_path), pid=2**22 + 1))  # no such process
