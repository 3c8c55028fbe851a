"""Sandbox GC: the schedule (pure, by age and by disk pressure) and the collector on real directories."""

from __future__ import annotations

import os
from pathlib import Path

from butte.agent.gc import GcSchedule, SandboxCollector, remove_sandboxes
from butte.agent.state import ExecutorKind, ExecutorState
from butte.wire.base import ID
from butte.wire.mesos import ExecutorInfo

WEEK_S = 7 * 24 * 3600.0


def test_a_path_is_due_after_the_delay() -> None:
    schedule = GcSchedule(delay_s=100.0, headroom=0.1)
    schedule.schedule("/a", now=0.0)
    schedule.schedule("/a", now=50.0)  # scheduled again: keeps its first time
    assert schedule.due(now=99.0) == []
    assert schedule.next_due_at() == 100.0
    assert schedule.due(now=100.0) == ["/a"]
    assert len(schedule) == 0


def test_disk_pressure_shortens_the_delay_as_mesos_does() -> None:
    schedule = GcSchedule(delay_s=WEEK_S, headroom=0.1)
    assert schedule.max_age_s(0.4) == WEEK_S * 0.5
    assert schedule.max_age_s(0.95) == 0.0
    schedule.schedule("/old", now=0.0)
    schedule.schedule("/new", now=WEEK_S * 0.6)
    assert schedule.due(now=WEEK_S * 0.6, disk_usage=0.4) == ["/old"]
    assert schedule.due(now=WEEK_S * 0.6, disk_usage=0.95) == ["/new"]


def test_unscheduled_paths_stay() -> None:
    schedule = GcSchedule(delay_s=1.0, headroom=0.1)
    schedule.schedule("/a", now=0.0)
    schedule.unschedule("/a")
    assert schedule.due(now=10.0) == []


def make_run(root: Path, framework: str, executor: str, container: str) -> Path:
    runs = root / "slaves" / "a1" / "frameworks" / framework / "executors" / executor / "runs"
    sandbox = runs / container
    sandbox.mkdir(parents=True)
    (sandbox / "stdout").write_text("out")
    (runs / "latest").symlink_to(container)
    return sandbox


def test_remove_sandboxes_takes_the_latest_link_and_empty_parents(tmp_path: Path) -> None:
    sandbox = make_run(tmp_path, "f1", "e1", "c1")
    make_run(tmp_path, "f1", "e2", "c2")
    remove_sandboxes([str(sandbox)])
    assert not (tmp_path / "slaves" / "a1" / "frameworks" / "f1" / "executors" / "e1").exists()
    assert (tmp_path / "slaves" / "a1" / "frameworks" / "f1" / "executors" / "e2" / "runs" / "c2").is_dir()


async def test_collector_removes_a_retired_executors_sandbox_when_due(tmp_path: Path) -> None:
    now = [1000.0]
    sandbox = make_run(tmp_path, "f1", "e1", "c1")
    collector = SandboxCollector(str(tmp_path), GcSchedule(100.0, 0.1), 60.0, lambda: now[0], lambda path: 0.2)
    info = ExecutorInfo(executor_id=ID(value="e1"))
    collector.executor_completed(ExecutorState(info, "f1", ExecutorKind.COMMAND, "c1", str(sandbox)))
    assert await collector.collect() == []
    now[0] += 100.0
    assert await collector.collect() == [str(sandbox)]
    assert not sandbox.exists()
    assert collector.snapshot().removed == 1


async def test_collector_schedules_leftovers_by_their_age(tmp_path: Path) -> None:
    live = make_run(tmp_path, "f1", "live", "c1")
    old = make_run(tmp_path, "f1", "old", "c2")
    os.utime(old, (0.0, 0.0))
    collector = SandboxCollector(str(tmp_path), GcSchedule(100.0, 0.1), 60.0, lambda: 1000.0, lambda path: 0.2)
    collector.schedule_leftovers([str(live)])
    assert await collector.collect() == [str(old)]
    assert live.exists()
