"""Meeting launch demand from offers: which app's tasks go on which offer, and why the rest were declined.

Pure. Apps are served in a stable order (by id), each taking as many tasks as fit on what is left of an offer
after the apps before it; an offer nothing fits is declined, and every app that could not use it records
the reasons for ``/v2/queue``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import final

import msgspec

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.constraints import attributes_of
from butte.frameworks.marathon.control import UnusedOffer
from butte.frameworks.marathon.instances import TERMINAL_STATES, InstanceBook
from butte.frameworks.marathon.model import Instance, app_config_version
from butte.frameworks.marathon.placement import Claim, match_offer
from butte.frameworks.marathon.queue import LaunchQueue
from butte.frameworks.marathon.taskinfo import build_task, new_task_id
from butte.scheduler.tasks import offer_resources
from butte.wire.marathon import App
from butte.wire.mesos import Offer, TaskInfo
from butte.wire.resources import resources_to_wire

# Marathon's --decline_offer_duration default: an offer nobody wants stays away for two minutes; a Revive
# brings it back as soon as there is something to launch again.
DECLINE_REFUSE_S = 120.0

# Marathon's --max_instances_per_offer: what is left of a big offer goes back to the master and returns with
# the next allocation, so that filling it never holds the event loop (and the REST API) for long.
MAX_INSTANCES_PER_OFFER = 100


@final
@dataclass(slots=True)
class LaunchResult:
    launched: list[Instance] = field(default_factory=list)
    effects: list[fx.Effect] = field(default_factory=list)


@final
class Launcher:
    """Turns offers and launch demand into LAUNCH and DECLINE calls (see the module docstring)."""

    def __init__(self, rng: random.Random, *, max_instances_per_offer: int = MAX_INSTANCES_PER_OFFER) -> None:
        self._rng = rng
        self._max_per_offer = max_instances_per_offer

    def launch(
        self,
        offers: Sequence[Offer],
        wanted: Mapping[str, tuple[App, int]],
        book: InstanceBook,
        queue: LaunchQueue,
        now: float,
    ) -> LaunchResult:
        result = LaunchResult()
        left = {app_id: count for app_id, (_, count) in wanted.items()}
        declined: list[str] = []
        for offer in offers:
            tasks = self._fill(offer, wanted, left, book, queue, now, result)
            if tasks:
                result.effects.append(fx.LaunchTasks(offer.id.value, tuple(tasks)))
            else:
                declined.append(offer.id.value)
        if result.launched:
            # Written before the LAUNCH calls that follow them: a crash never orphans a task.
            result.effects.insert(0, fx.SaveInstances(tuple(result.launched)))
        if declined:
            result.effects.append(fx.DeclineOffers(tuple(declined), DECLINE_REFUSE_S))
        return result

    def _fill(
        self,
        offer: Offer,
        wanted: Mapping[str, tuple[App, int]],
        left: dict[str, int],
        book: InstanceBook,
        queue: LaunchQueue,
        now: float,
        result: LaunchResult,
    ) -> list[TaskInfo]:
        tasks: list[TaskInfo] = []
        remaining = offer
        for app_id in sorted(wanted):
            app = wanted[app_id][0]
            room = min(left[app_id], self._max_per_offer - len(tasks))
            if room <= 0:
                continue
            placed = [i for i in book.of_app(app_id) if i.state not in TERMINAL_STATES] + [
                i for i in result.launched if i.app_id == app_id
            ]
            claims, rejection = match_offer(app, remaining, placed, count=room, rng=self._rng)
            waiting = queue.get(app_id)
            if waiting is not None:
                if claims:
                    waiting.record_used()
                elif rejection is not None:
                    waiting.record_unused(_unused(offer, rejection.reasons, now))
            for claim in claims:
                instance, task = self._task(app, offer, claim, now)
                result.launched.append(instance)
                tasks.append(task)
            left[app_id] -= len(claims)
            if claims:
                remaining = _without(remaining, claims)
        return tasks

    def _task(self, app: App, offer: Offer, claim: Claim, now: float) -> tuple[Instance, TaskInfo]:
        task_id = new_task_id(app.id, self._rng)
        agent_id = offer.agent_id.value
        task = build_task(app, task_id=task_id, agent_id=agent_id, hostname=offer.hostname, claim=claim)
        instance = Instance(
            task_id=task_id,
            app_id=app.id,
            version=app.version or "",
            config_version=app_config_version(app),
            agent_id=agent_id,
            host=offer.hostname,
            staged_at=now,
            ports=claim.host_ports,
            attributes=attributes_of(offer),
        )
        return instance, task


def _without(offer: Offer, claims: Sequence[Claim]) -> Offer:
    """What is left of an offer once ``claims`` are taken out of it."""
    left = offer_resources(offer)
    for claim in claims:
        left = left - claim.resources
    return msgspec.structs.replace(offer, resources=resources_to_wire(left))


def _unused(offer: Offer, reasons: Sequence[str], now: float) -> UnusedOffer:
    return UnusedOffer(
        offer_id=offer.id.value,
        agent_id=offer.agent_id.value,
        hostname=offer.hostname,
        reasons=tuple(reasons),
        timestamp=now,
    )
