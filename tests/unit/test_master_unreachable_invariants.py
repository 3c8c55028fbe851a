"""The invariant checker the partition tests use, judged on hand-made histories."""

from __future__ import annotations

import os

from butte.testing.invariants import History, assert_sound, running_tasks, violations
from butte.wire.base import ID
from butte.wire.mesos import TaskStatus


def _status(task_id: str, state: str, agent_id: str = "A", uuid: str | None = "u") -> TaskStatus:
    return TaskStatus(task_id=ID(value=task_id), state=state, agent_id=ID(value=agent_id), uuid=uuid)  # type: ignore[arg-type]


def _history(*updates: TaskStatus, launched: tuple[str, ...] = ("t1",)) -> History:
    history = History()
    for task_id in launched:
        history.launch(task_id)
    for status in updates:
        history.told(status)
    return history


def test_a_partition_aware_heal_is_sound() -> None:
    history = _history(
        _status("t1", "TASK_RUNNING"),
        _status("t1", "TASK_UNREACHABLE", uuid=None),
        _status("t1", "TASK_RUNNING", uuid=None),
    )
    history.sample({"t1": frozenset({"A"})})
    assert_sound(history, {"t1": frozenset({"A"})})


def test_a_task_on_two_agents_at_once_is_caught() -> None:
    history = _history(_status("t1", "TASK_RUNNING"))
    history.sample({"t1": frozenset({"A", "B"})})
    assert violations(history, {"t1": frozenset({"A"})}) == ["t1 runs on ['A', 'B'] at once"]


def test_running_reports_from_two_agents_are_caught() -> None:
    history = _history(_status("t1", "TASK_RUNNING", "A"), _status("t1", "TASK_RUNNING", "B"))
    assert "t1 reported RUNNING on A and on B" in violations(history, {"t1": frozenset({"B"})})


def test_running_after_an_acknowledged_terminal_state_is_caught() -> None:
    history = _history(_status("t1", "TASK_LOST", uuid=None), _status("t1", "TASK_RUNNING"))
    assert "t1 reported RUNNING after TASK_LOST" in violations(history, {"t1": frozenset({"A"})})


def test_an_unacknowledged_terminal_state_may_be_superseded() -> None:
    history = History()
    history.launch("t1")
    history.told(_status("t1", "TASK_FAILED"), acknowledged=False)
    history.told(_status("t1", "TASK_RUNNING"))
    assert violations(history, {"t1": frozenset({"A"})}) == []


def test_every_launched_task_must_be_told_a_state_that_is_true_at_the_end() -> None:
    history = _history(
        _status("t1", "TASK_LOST", uuid=None), _status("t2", "TASK_RUNNING"), launched=("t1", "t2", "t3")
    )
    assert violations(history, {"t1": frozenset({"A"})}) == [
        "t1 was reported TASK_LOST but still runs on ['A']",
        "t2 was reported RUNNING on A but does not run there",
        "t3 was launched but its framework was never told a state",
    ]


def test_running_tasks_reads_nothing_for_an_unknown_marker() -> None:
    assert running_tasks(f"no-such-marker-{os.getpid()}") == {}
