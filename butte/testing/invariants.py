"""The invariant checker of the fault-tolerance tests: judge what frameworks were told against what ran.

In the manner of Jepsen, a test records a history (every status update a framework saw, every task it
launched) and samples reality (which task ids have live processes on which agent, read from ``/proc``);
after the faults heal, :func:`violations` judges the lot:

- no task id runs on two agents at once (in any sample, or as RUNNING reports from two agents with no
  terminal state in between);
- no terminal state the framework was told (and acknowledged, or that carried no uuid to acknowledge) is
  followed by TASK_RUNNING;
- every launched task reaches a state the framework was told, and that state is true at the end: a task
  last reported RUNNING runs on that agent, a task last reported terminal runs nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

from butte.scheduler.sdk import SchedulerClient, command_task, offer_resources
from butte.testing.process import MARKER_ENV, is_alive
from butte.wire.mesos import TERMINAL_STATES, Capability, FrameworkInfo, Offer, TaskStatus
from butte.wire.scheduler import Event

# A sample of reality: task id -> the agents on which a live process of that task runs.
Placement = Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One status update as a framework saw it, in the order it arrived."""

    task_id: str
    state: str
    agent_id: str | None
    acknowledged: bool


@final
@dataclass
class History:
    """What a test's frameworks launched and were told, and samples of what really ran."""

    launched: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)

    def launch(self, task_id: str) -> None:
        """A framework asked for this task."""
        self.launched.append(task_id)

    def told(self, status: TaskStatus, *, acknowledged: bool = True) -> None:
        """A framework received this update (the SDK acknowledges those with a uuid by itself)."""
        agent_id = status.agent_id.value if status.agent_id is not None else None
        self.seen.append(Seen(status.task_id.value, status.state, agent_id, acknowledged or status.uuid is None))

    def sample(self, placement: Placement) -> None:
        """Record which agents run which task ids right now."""
        self.placements.append(placement)

    def last_state(self, task_id: str) -> str | None:
        """The latest state the framework was told for the task."""
        states = [s.state for s in self.seen if s.task_id == task_id]
        return states[-1] if states else None


def running_tasks(marker: str) -> dict[str, frozenset[str]]:
    """Task id -> agents running a live process for it, among processes carrying the kit's marker."""
    found: dict[str, set[str]] = defaultdict(set)
    for _, task_id, agent_id in task_processes(marker):
        found[task_id].add(agent_id)
    return {task_id: frozenset(agents) for task_id, agents in found.items()}


def task_processes(marker: str) -> list[tuple[int, str, str]]:
    """(pid, task id, agent id) of every live task process carrying the kit's marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        env = _environ(int(entry))
        if env.get(MARKER_ENV) == marker and "MESOS_TASK_ID" in env and is_alive(int(entry)):
            found.append((int(entry), env["MESOS_TASK_ID"], env.get("MESOS_SLAVE_ID", "?")))
    return found


def _environ(pid: int) -> dict[str, str]:
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
        return {name: value for name, _, value in pairs}
    return {}


def violations(history: History, final: Placement) -> list[str]:
    """Every broken invariant, in words; empty when the history is sound."""
    return [
        *_on_two_agents([*history.placements, final]),
        *_reported_on_two_agents(history.seen),
        *_running_after_terminal(history.seen),
        *_unresolved(history, final),
    ]


def assert_sound(history: History, final: Placement) -> None:
    """Fail with every violation listed.

    Raises:
        AssertionError: an invariant is broken.
    """
    found = violations(history, final)
    assert not found, "invariants broken:\n" + "\n".join(found)


def _on_two_agents(placements: Iterable[Placement]) -> list[str]:
    return [
        f"{task_id} runs on {sorted(agents)} at once"
        for placement in placements
        for task_id, agents in placement.items()
        if len(agents) > 1
    ]


def _reported_on_two_agents(seen: Sequence[Seen]) -> list[str]:
    running_on: dict[str, str] = {}
    found = []
    for update in seen:
        if update.state in TERMINAL_STATES:
            running_on.pop(update.task_id, None)
        elif update.state == "TASK_RUNNING" and update.agent_id is not None:
            other = running_on.setdefault(update.task_id, update.agent_id)
            if other != update.agent_id:
                found.append(f"{update.task_id} reported RUNNING on {other} and on {update.agent_id}")
    return found


def _running_after_terminal(seen: Sequence[Seen]) -> list[str]:
    ended: dict[str, str] = {}
    found = []
    for update in seen:
        if update.state in TERMINAL_STATES and update.acknowledged:
            ended.setdefault(update.task_id, update.state)
        elif update.state == "TASK_RUNNING" and update.task_id in ended:
            found.append(f"{update.task_id} reported RUNNING after {ended[update.task_id]}")
    return found


def _unresolved(history: History, final: Placement) -> list[str]:
    found = []
    for task_id in history.launched:
        state = history.last_state(task_id)
        agents = final.get(task_id, frozenset())
        agent_id = next((s.agent_id for s in reversed(history.seen) if s.task_id == task_id), None)
        if state is None:
            found.append(f"{task_id} was launched but its framework was never told a state")
        elif state in TERMINAL_STATES and agents:
            found.append(f"{task_id} was reported {state} but still runs on {sorted(agents)}")
        elif state == "TASK_RUNNING" and agent_id is not None and agent_id not in agents:
            found.append(f"{task_id} was reported RUNNING on {agent_id} but does not run there")
    return found


@final
class RecordingFramework:
    """A framework that launches ``wanted`` long sleepers and records its :class:`History` as it goes."""

    def __init__(self, master: str, *, partition_aware: bool, wanted: int, name: str = "recorder") -> None:
        capabilities = [Capability(type="PARTITION_AWARE")] if partition_aware else []
        info = FrameworkInfo(user=os.environ.get("USER") or "root", name=name, capabilities=capabilities)
        self.client = SchedulerClient(master, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        self.wanted = wanted
        self.history = History()
        self.statuses: list[TaskStatus] = []
        self.lost_agents: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RecordingFramework:
        await self.client.subscribe(timeout_s=30)
        self._pump = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self.client.close()

    def latest(self, task_id: str) -> TaskStatus | None:
        """The last update seen for the task."""
        return next((s for s in reversed(self.statuses) if s.task_id.value == task_id), None)

    def all_in(self, state: str) -> bool:
        """Whether every wanted task was launched and its latest update is ``state``."""
        latest = [self.latest(t) for t in self.history.launched]
        return len(latest) == self.wanted and all(s is not None and s.state == state for s in latest)

    async def _run(self) -> None:
        async for event in self.client.events():
            if not isinstance(event, Event):
                continue
            if event.type == "OFFERS" and event.offers is not None:
                for offer in event.offers.offers:
                    await self._use(offer)
            elif event.type == "UPDATE" and event.update is not None:
                self.statuses.append(event.update.status)
                self.history.told(event.update.status)
            elif event.type == "FAILURE" and event.failure is not None and event.failure.agent_id is not None:
                self.lost_agents.append(event.failure.agent_id.value)

    async def _use(self, offer: Offer) -> None:
        # Every sleeper the offer fits goes in one ACCEPT: the unused rest comes back with a 5 s filter.
        fits = int(min(offer_resources(offer).scalar("cpus") / 0.1, offer_resources(offer).scalar("mem") / 16))
        count = min(self.wanted - len(self.history.launched), fits)
        if count <= 0:
            await self.client.decline([offer.id.value], refuse_seconds=60)
            return
        infos = []
        for _ in range(count):
            task_id = f"sleeper-{len(self.history.launched)}"
            self.history.launch(task_id)
            infos.append(command_task(task_id, offer.agent_id.value, "exec sleep 300", 0.1, 16))
        await self.client.launch(offer, infos)
