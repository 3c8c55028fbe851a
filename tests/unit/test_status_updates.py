"""The agent's status update manager: order, duplicates, acks, retry timing, replay."""

from __future__ import annotations

from butte.agent.status_updates import (
    ForwardUpdate,
    StatusUpdateManager,
    UpdateAcknowledged,
)
from butte.core.errors import ValidationError
from butte.wire.base import ID
from butte.wire.mesos import TaskState, TaskStatus


def status(task_id: str, state: TaskState, uuid: str) -> TaskStatus:
    return TaskStatus(task_id=ID(value=task_id), state=state, uuid=uuid)


def running_manager(now: float = 0.0) -> StatusUpdateManager:
    manager = StatusUpdateManager()
    assert manager.resume(now) == []
    return manager


def forwarded_uuids(effects: list[ForwardUpdate | UpdateAcknowledged]) -> list[str]:
    return [effect.uuid for effect in effects if isinstance(effect, ForwardUpdate)]


def test_first_update_is_forwarded_at_once() -> None:
    manager = running_manager()
    effects = manager.update("f", status("t", "TASK_STARTING", "u1"), now=1.0)
    assert effects == [ForwardUpdate("f", "t", "u1", status("t", "TASK_STARTING", "u1"), retry=False)]
    assert manager.next_retry_at() == 11.0


def test_only_the_head_is_in_flight_and_an_ack_sends_the_next() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_STARTING", "u1"), now=0.0)
    assert manager.update("f", status("t", "TASK_RUNNING", "u2"), now=0.0) == []
    effects = manager.acknowledge("f", "t", "u1", now=2.0)
    assert isinstance(effects[0], UpdateAcknowledged) and not effects[0].stream_closed
    assert forwarded_uuids(effects) == ["u2"]
    assert manager.next_retry_at() == 12.0


def test_streams_of_different_tasks_are_independent() -> None:
    manager = running_manager()
    assert forwarded_uuids(manager.update("f", status("a", "TASK_RUNNING", "a1"), 0.0)) == ["a1"]
    assert forwarded_uuids(manager.update("f", status("b", "TASK_RUNNING", "b1"), 0.0)) == ["b1"]
    assert forwarded_uuids(manager.update("g", status("a", "TASK_RUNNING", "ga1"), 0.0)) == ["ga1"]


def test_a_duplicate_update_is_ignored() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0)
    assert manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0) == []
    assert len(manager.pending("f", "t")) == 1


def test_acks_with_a_wrong_uuid_or_for_unknown_tasks_are_ignored() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_STARTING", "u1"), 0.0)
    manager.update("f", status("t", "TASK_RUNNING", "u2"), 0.0)
    assert manager.acknowledge("f", "t", "u2", 1.0) == []  # not the head
    assert manager.acknowledge("f", "other", "u1", 1.0) == []
    assert manager.acknowledge("g", "t", "u1", 1.0) == []
    assert [s.uuid for s in manager.pending("f", "t")] == ["u1", "u2"]


def test_a_repeated_ack_is_ignored() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0)
    assert len(manager.acknowledge("f", "t", "u1", 1.0)) == 1
    assert manager.acknowledge("f", "t", "u1", 1.0) == []


def test_terminal_ack_closes_the_stream() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_FINISHED", "u1"), 0.0)
    [effect] = manager.acknowledge("f", "t", "u1", 1.0)
    assert isinstance(effect, UpdateAcknowledged) and effect.stream_closed
    assert manager.snapshot().streams == 0
    assert manager.next_retry_at() is None


def test_updates_queued_behind_a_terminal_one_are_dropped_with_the_stream() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_FAILED", "u1"), 0.0)
    manager.update("f", status("t", "TASK_RUNNING", "u2"), 0.0)
    effects = manager.acknowledge("f", "t", "u1", 1.0)
    assert forwarded_uuids(effects) == []
    assert manager.pending("f", "t") == ()


def test_retries_back_off_from_10s_doubling_to_10min() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0)
    retry_times = []
    now = 0.0
    for _ in range(9):
        due = manager.next_retry_at()
        assert due is not None
        assert manager.tick(due - 0.001) == []  # not before it is due
        now = due
        [effect] = manager.tick(now)
        assert isinstance(effect, ForwardUpdate) and effect.retry and effect.uuid == "u1"
        retry_times.append(now)
    gaps = [b - a for a, b in zip([0.0, *retry_times], retry_times, strict=False)]
    assert gaps == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0, 600.0]


def test_an_ack_resets_the_backoff_for_the_next_update() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_STARTING", "u1"), 0.0)
    manager.update("f", status("t", "TASK_RUNNING", "u2"), 0.0)
    manager.tick(10.0)
    manager.tick(30.0)
    manager.acknowledge("f", "t", "u1", 35.0)
    assert manager.next_retry_at() == 45.0


def test_paused_manager_queues_and_replays_every_head_on_resume() -> None:
    manager = StatusUpdateManager()
    assert manager.update("f", status("a", "TASK_RUNNING", "a1"), 0.0) == []
    manager.update("f", status("a", "TASK_FINISHED", "a2"), 0.0)
    manager.update("f", status("b", "TASK_RUNNING", "b1"), 0.0)
    assert manager.tick(1000.0) == []
    assert manager.next_retry_at() is None
    effects = manager.resume(5.0)
    assert sorted(forwarded_uuids(effects)) == ["a1", "b1"]
    assert manager.next_retry_at() == 15.0


def test_pause_stops_retries_and_resume_replays_in_flight_heads() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0)
    manager.pause()
    assert manager.tick(100.0) == []
    assert manager.acknowledge("f", "t", "u1", 101.0) != []  # an ack that raced the disconnect still pops
    manager.update("f", status("t", "TASK_FINISHED", "u2"), 102.0)
    assert forwarded_uuids(manager.resume(200.0)) == ["u2"]


def test_update_without_uuid_is_rejected() -> None:
    manager = running_manager()
    try:
        manager.update("f", TaskStatus(task_id=ID(value="t"), state="TASK_RUNNING"), 0.0)
    except ValidationError as exc:
        assert exc.field == "status.uuid"
    else:
        raise AssertionError("expected ValidationError")


def test_remove_framework_drops_its_streams_only() -> None:
    manager = running_manager()
    manager.update("f", status("t", "TASK_RUNNING", "u1"), 0.0)
    manager.update("g", status("t", "TASK_RUNNING", "u2"), 0.0)
    manager.remove_framework("f")
    assert manager.pending("f", "t") == ()
    assert len(manager.pending("g", "t")) == 1
    assert manager.snapshot().streams == 1
