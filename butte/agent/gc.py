"""Sandbox garbage collection as Mesos does it: ``--gc_delay``, ``--disk_watch_interval``, ``--gc_disk_headroom``.

A sandbox is scheduled for removal when its executor is retired: its process has ended and every update of
its tasks has been acknowledged (so the framework has heard the end, and until the delay runs out it can
still read the sandbox through ``/files``). It is removed ``--gc_delay`` after that. Every
``--disk_watch_interval`` the agent checks the disk of its work dir and, as Mesos does, removes sooner every
sandbox scheduled longer ago than ``gc_delay * max(0, 1 - headroom - usage)``. Sandboxes an earlier run of
the agent left are scheduled at start from their modification time.

:class:`GcSchedule` is the pure core (paths and times in, paths to remove out); :class:`SandboxCollector`
runs it on the event loop and removes directories on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import final

from butte.agent.state import ExecutorState, FrameworkState, TaskRecord

log = logging.getLogger(__name__)


@final
class GcSchedule:
    """Paths with the time they were scheduled at; which are due, by age or by disk pressure."""

    def __init__(self, delay_s: float, headroom: float) -> None:
        self.delay_s = delay_s
        self.headroom = headroom
        self._scheduled: dict[str, float] = {}

    def schedule(self, path: str, now: float) -> None:
        """Remove ``path`` ``delay_s`` after ``now`` (a path scheduled again keeps its first time)."""
        self._scheduled.setdefault(path, now)

    def unschedule(self, path: str) -> None:
        """Keep ``path`` after all (it is in use again)."""
        self._scheduled.pop(path, None)

    def max_age_s(self, disk_usage: float) -> float:
        """How long a sandbox may stay at this disk usage (0..1): Mesos's ``gc_delay * (1 - headroom - usage)``."""
        return self.delay_s * max(0.0, 1.0 - self.headroom - disk_usage)

    def due(self, now: float, disk_usage: float | None = None) -> list[str]:
        """Take out and return every path older than the delay, shortened by disk usage when it is given."""
        limit = self.delay_s if disk_usage is None else min(self.delay_s, self.max_age_s(disk_usage))
        paths = [path for path, at in self._scheduled.items() if now - at >= limit]
        for path in paths:
            del self._scheduled[path]
        return paths

    def next_due_at(self) -> float | None:
        """When the oldest path is due at the full delay."""
        return min(self._scheduled.values()) + self.delay_s if self._scheduled else None

    def __len__(self) -> int:
        return len(self._scheduled)


@final
@dataclass(frozen=True, slots=True)
class GcSnapshot:
    """What the collector holds and has done."""

    scheduled: int
    removed: int
    last_disk_usage: float


@final
class SandboxCollector:
    """Schedules retired executors' sandboxes and removes them when due; a :class:`StateObserver`."""

    def __init__(
        self,
        work_dir: str,
        schedule: GcSchedule,
        disk_watch_interval_s: float,
        clock: Callable[[], float],
        disk_usage: Callable[[str], float] | None = None,
    ) -> None:
        self._work_dir = work_dir
        self._schedule = schedule
        self._interval_s = disk_watch_interval_s
        self._clock = clock
        self._disk_usage = disk_usage or fraction_used
        self._wake = asyncio.Event()
        self._removed = 0
        self._last_usage = 0.0

    def schedule_leftovers(self, live_directories: Iterable[str]) -> None:
        """Schedule every run directory no live executor uses, from the time it last changed."""
        live = set(live_directories)
        pattern = os.path.join(self._work_dir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*")
        for path in glob.glob(pattern):
            if path in live or os.path.islink(path) or not os.path.isdir(path):
                continue
            with contextlib.suppress(OSError):
                self._schedule.schedule(path, os.path.getmtime(path))

    async def run(self) -> None:
        """Remove what is due, waking at the next due time or the disk watch interval; until cancelled."""
        while True:
            self._wake.clear()
            due_at = self._schedule.next_due_at()
            timeout = self._interval_s if due_at is None else min(self._interval_s, max(0.0, due_at - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            await self.collect()

    async def collect(self) -> list[str]:
        """Remove every sandbox due now; the paths removed."""
        self._last_usage = self._disk_usage(self._work_dir)
        paths = self._schedule.due(self._clock(), self._last_usage)
        if paths:
            await asyncio.get_running_loop().run_in_executor(None, remove_sandboxes, paths)
            self._removed += len(paths)
            log.info("Removed %d sandboxes (disk %.0f%% used)", len(paths), self._last_usage * 100)
        return paths

    def snapshot(self) -> GcSnapshot:
        """Counts for tests and metrics."""
        return GcSnapshot(len(self._schedule), self._removed, self._last_usage)

    # ---- StateObserver: only a retired executor matters ----

    def executor_completed(self, executor: ExecutorState) -> None:
        """Its tasks are acknowledged and its process ended: schedule its sandbox."""
        if executor.directory:
            self._schedule.schedule(executor.directory, self._clock())
            self._wake.set()

    def executor_added(self, executor: ExecutorState) -> None:
        """Nothing to do."""

    def task_added(self, task: TaskRecord) -> None:
        """Nothing to do."""

    def task_completed(self, task: TaskRecord) -> None:
        """Nothing to do."""

    def framework_removed(self, framework: FrameworkState) -> None:
        """Nothing to do: its executors were retired one by one."""


def fraction_used(path: str) -> float:
    """The share (0..1) of the file system holding ``path`` that is in use."""
    usage = shutil.disk_usage(path)
    return usage.used / usage.total if usage.total else 0.0


def remove_sandboxes(paths: Iterable[str]) -> None:
    """Remove each run directory, its ``latest`` link if it points there, and parents left empty."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        runs = os.path.dirname(path)
        latest = os.path.join(runs, "latest")
        with contextlib.suppress(OSError):
            if os.readlink(latest) == os.path.basename(path):
                os.unlink(latest)
        _remove_empty_parents(runs, stop_at_depth=4)


def _remove_empty_parents(path: str, stop_at_depth: int) -> None:
    # runs -> executor -> executors -> framework: as far up as they are empty (Mesos GCs those too).
    for _ in range(stop_at_depth):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)
