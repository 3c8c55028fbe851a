"""A test framework that launches long sleepers writing their pids, and records what it is told.

Failover tests use it to check, task by task, that nothing was killed, lost or run twice: each sleeper
writes its pid to ``pid_dir/<task id>`` so a test can see whether the very process is still alive.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from butte.scheduler.detector import MasterDetector
from butte.scheduler.sdk import SchedulerClient, command_task, offer_resources
from butte.wire.base import ID
from butte.wire.mesos import FrameworkInfo, Offer, TaskStatus
from butte.wire.scheduler import Event

SLEEPER_CPUS = 0.1
SLEEPER_MEM = 16.0


class SleeperFramework:
    """Launches ``wanted`` sleepers (at most ``per_offer`` per offer) and keeps every status it sees."""

    def __init__(self, client: SchedulerClient, pid_dir: Path, wanted: int, per_offer: int | None = None) -> None:
        self.client = client
        self.pid_dir = pid_dir
        self.wanted = wanted
        self.per_offer = per_offer
        self.launched = 0
        self.statuses: list[TaskStatus] = []
        self.subscriptions = 0

    def latest(self, task_id: str) -> str | None:
        """The last state the framework was told for the task."""
        states = [s.state for s in self.statuses if s.task_id.value == task_id]
        return states[-1] if states else None

    async def run(self) -> None:
        """Handle events until the client stops."""
        async for event in self.client.events():
            if not isinstance(event, Event):
                continue
            if event.type == "SUBSCRIBED":
                self.subscriptions += 1
            elif event.type == "OFFERS" and event.offers is not None:
                for offer in event.offers.offers:
                    await self._use(offer)
            elif event.type == "UPDATE" and event.update is not None:
                self.statuses.append(event.update.status)

    async def _use(self, offer: Offer) -> None:
        room = int(offer_resources(offer).scalar("cpus") / SLEEPER_CPUS + 1e-6)
        count = min(self.wanted - self.launched, room, self.per_offer or room)
        if count <= 0:
            await self.client.decline([offer.id.value], refuse_seconds=60)
            return
        tasks = []
        for _ in range(count):
            task_id = f"sleeper-{self.launched}"
            self.launched += 1
            command = f"echo $$ > {self.pid_dir / task_id}; exec sleep 300"
            tasks.append(command_task(task_id, offer.agent_id.value, command, SLEEPER_CPUS, SLEEPER_MEM))
        await self.client.launch(offer, tasks)


@asynccontextmanager
async def sleeper_framework(
    master: str | MasterDetector,
    pid_dir: Path,
    wanted: int,
    *,
    name: str = "sleepers",
    failover_timeout: float = 300.0,
    framework_id: str | None = None,
    per_offer: int | None = None,
) -> AsyncIterator[SleeperFramework]:
    """A subscribed :class:`SleeperFramework` whose events are handled in the background."""
    info = FrameworkInfo(user=os.environ.get("USER", "root"), name=name, failover_timeout=failover_timeout)
    if framework_id is not None:
        info.id = ID(value=framework_id)
    client = SchedulerClient(master, info, initial_backoff_s=0.1, max_backoff_s=0.5)
    await client.subscribe(timeout_s=30)
    framework = SleeperFramework(client, pid_dir, wanted, per_offer)
    pump = asyncio.create_task(framework.run())
    try:
        yield framework
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await client.close()


def pid_alive(pid: int) -> bool:
    """Whether a process with that pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def task_pids(pid_dir: Path) -> dict[str, int]:
    """The pids the sleepers wrote so far, by task id."""
    return {p.name: int(p.read_text()) for p in pid_dir.iterdir() if p.read_text().strip()}
