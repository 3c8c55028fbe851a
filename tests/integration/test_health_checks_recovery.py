"""A task's health check goes on after its agent is killed and restarted (real cluster, real processes)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import msgspec
import pytest

from butte.scheduler.sdk import SchedulerClient, command_task
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.mesos import FrameworkInfo, TaskStatus
from butte.wire.scheduler import Event

pytestmark = [pytest.mark.integration]


async def record_updates(client: SchedulerClient, statuses: list[TaskStatus], health_check: bytes) -> None:
    """Launch one health-checked sleeper on the first offer; record every update."""
    launched = False
    async for event in client.events():
        if not isinstance(event, Event):
            continue
        if event.type == "OFFERS" and event.offers is not None and not launched:
            offer = event.offers.offers[0]
            task = command_task("watched", offer.agent_id.value, "exec sleep 300", 0.1, 16)
            task.health_check = msgspec.Raw(health_check)
            await client.launch(offer, [task])
            launched = True
        elif event.type == "UPDATE" and event.update is not None:
            statuses.append(event.update.status)


async def test_health_checks_resume_after_an_agent_restart(tmp_path: Path) -> None:
    stop_flag = tmp_path / "unhealthy"
    check = {"type": "COMMAND", "command": {"value": f"test ! -e {stop_flag}"}, "delay_seconds": 0}
    check |= {"interval_seconds": 0.2, "timeout_seconds": 2, "grace_period_seconds": 0, "consecutive_failures": 2}
    statuses: list[TaskStatus] = []
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name="health", checkpoint=True)
        client = SchedulerClient(cluster.master_address, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        await client.subscribe(timeout_s=30)
        pump = asyncio.create_task(record_updates(client, statuses, json.dumps(check).encode()))
        try:
            await until(lambda: any(s.healthy for s in statuses), timeout=30, what="a healthy update")
            await cluster.kill_agent(0)
            await cluster.restart_agent(0)
            stop_flag.touch()  # only the restarted agent's checks can notice this
            await until(lambda: statuses[-1].state == "TASK_KILLED", timeout=20, what="the task killed")
            assert "health check failed 2 times in a row" in (statuses[-1].message or "")
            assert statuses[-1].healthy is False
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()
