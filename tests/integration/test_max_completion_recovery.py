"""``max_completion_time`` across an agent restart: the deadline keeps counting from the task's start, and one
that passed while the agent was down kills the task as soon as the agent is back (real cluster, real processes).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path

import pytest

from butte.scheduler.sdk import SchedulerClient, command_task
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.mesos import DurationInfo, FrameworkInfo, TaskStatus
from butte.wire.scheduler import Event

pytestmark = [pytest.mark.integration]

DEADLINES_S = {"short": 1.0, "long": 4.0}


async def record_updates(client: SchedulerClient, statuses: list[TaskStatus]) -> None:
    """Launch a sleeper per deadline on the first offer; record every update."""
    launched = False
    async for event in client.events():
        if not isinstance(event, Event):
            continue
        if event.type == "OFFERS" and event.offers is not None and not launched:
            offer = event.offers.offers[0]
            tasks = [command_task(name, offer.agent_id.value, "exec sleep 300", 0.1, 16) for name in DEADLINES_S]
            for task in tasks:
                task.max_completion_time = DurationInfo(nanoseconds=int(DEADLINES_S[task.name] * 1e9))
            await client.launch(offer, tasks)
            launched = True
        elif event.type == "UPDATE" and event.update is not None:
            statuses.append(event.update.status)


def first(statuses: list[TaskStatus], task_id: str, state: str) -> TaskStatus | None:
    return next((s for s in statuses if s.task_id.value == task_id and s.state == state), None)


async def test_the_deadline_survives_an_agent_restart(tmp_path: Path) -> None:
    statuses: list[TaskStatus] = []
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name="deadline", checkpoint=True)
        client = SchedulerClient(cluster.master_address, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        await client.subscribe(timeout_s=30)
        pump = asyncio.create_task(record_updates(client, statuses))
        try:
            running = {
                name: await until(functools.partial(first, statuses, name, "TASK_RUNNING"), timeout=30)
                for name in DEADLINES_S
            }
            await cluster.kill_agent(0)
            started_s = {name: status.timestamp or 0.0 for name, status in running.items()}
            # The agent stays down past the short task's deadline (the task itself runs on).
            await until(lambda: time.time() > started_s["short"] + DEADLINES_S["short"] + 0.5, timeout=5)
            await cluster.restart_agent(0)
            back_at = time.time()
            failed = {
                name: await until(functools.partial(first, statuses, name, "TASK_FAILED"), timeout=20)
                for name in DEADLINES_S
            }
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()
    for status in failed.values():
        assert status.reason == "REASON_MAX_COMPLETION_TIME_REACHED", status
        assert status.timestamp is not None
    # Killed as soon as the agent was back, not a whole deadline after it recovered the task.
    assert failed["short"].timestamp is not None and failed["short"].timestamp < back_at + 0.5
    # Counted from its first start: a deadline restarted at recovery would end past start + 1.5 s down + 4 s.
    long_s = (failed["long"].timestamp or 0.0) - started_s["long"]
    assert DEADLINES_S["long"] - 0.1 <= long_s < DEADLINES_S["long"] + 1.0, long_s
