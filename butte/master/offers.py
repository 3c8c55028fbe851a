"""Offers: made from the allocator's allocations, rescinded, timed out, declined (pure)."""

from __future__ import annotations

from collections import defaultdict

from butte.allocator.hierarchical import Allocation
from butte.core.errors import ValidationError
from butte.master.effects import Effect, SendToFramework
from butte.master.model import Agent, Framework, Offer
from butte.master.state import MasterState, id_of
from butte.wire import mesos
from butte.wire.resources import resources_to_wire
from butte.wire.scheduler import Event, OffersEvent, Rescind

# Mesos caps refuse_seconds at one year.
MAX_REFUSE_SECONDS = 31536000.0


def make_offers(state: MasterState, allocations: list[Allocation], now: float) -> list[Effect]:
    """Turn allocations into offers, one OFFERS event per framework."""
    by_framework: dict[str, list[mesos.Offer]] = defaultdict(list)
    for allocation in allocations:
        offer = _record_offer(state, allocation, now)
        if offer is None:
            continue
        framework = state.frameworks[offer.framework_id]
        by_framework[offer.framework_id].append(offer_to_wire(state, framework, offer))
    return [
        SendToFramework(fid, Event(type="OFFERS", offers=OffersEvent(offers=wire)))
        for fid, wire in by_framework.items()
    ]


def _record_offer(state: MasterState, allocation: Allocation, now: float) -> Offer | None:
    framework = state.frameworks.get(allocation.framework_id)
    agent = state.agents.get(allocation.agent_id)
    if framework is None or agent is None or not framework.connected or not agent.active:
        # The allocator raced a removal: hand the resources straight back.
        state.allocator.recover(
            allocation.framework_id, allocation.role, allocation.agent_id, allocation.resources, now
        )
        return None
    offer = Offer(
        id=state.new_offer_id(),
        framework_id=framework.id,
        agent_id=agent.id,
        role=allocation.role,
        resources=allocation.resources,
        created_at=now,
    )
    state.offers[offer.id] = offer
    framework.offers.add(offer.id)
    agent.offers.add(offer.id)
    return offer


def offer_to_wire(state: MasterState, framework: Framework, offer: Offer) -> mesos.Offer:
    """The Offer as the framework sees it (no allocation_info unless it is MULTI_ROLE)."""
    agent = state.agents[offer.agent_id]
    allocation_role = offer.role if framework.multi_role else None
    executor_ids = sorted(e for (a, e) in framework.executors if a == agent.id)
    return mesos.Offer(
        id=id_of(offer.id),
        framework_id=id_of(framework.id),
        agent_id=id_of(agent.id),
        hostname=agent.hostname,
        url=mesos.URL(
            scheme="http",
            address=mesos.Address(hostname=agent.hostname, ip=agent.ip, port=agent.port),
            path="/slave(1)",
        ),
        resources=resources_to_wire(offer.resources, allocation_role=allocation_role),
        attributes=agent.info.attributes,
        executor_ids=[id_of(e) for e in executor_ids],
        allocation_info=mesos.AllocationInfo(role=offer.role) if allocation_role else None,
    )


def take_offer(state: MasterState, offer_id: str) -> Offer:
    """Remove an offer from the books so it cannot be used twice; the caller owns its resources now.

    Raises:
        KeyError: there is no such offer.
    """
    offer = state.offers.pop(offer_id)
    framework = state.frameworks.get(offer.framework_id)
    if framework is not None:
        framework.offers.discard(offer_id)
    agent = state.agents.get(offer.agent_id)
    if agent is not None:
        agent.offers.discard(offer_id)
    return offer


def refuse_seconds(filters: mesos.Filters | None) -> float:
    """The filter to install for declined resources: Mesos's default 5 s, capped at a year.

    Raises:
        ValidationError: refuse_seconds is not a finite number.
    """
    value = 5.0 if filters is None else filters.refuse_seconds
    if value != value:  # NaN
        raise ValidationError("filters.refuse_seconds", "must be a number")
    return min(max(value, 0.0), MAX_REFUSE_SECONDS)


def decline(
    state: MasterState, framework: Framework, offer_ids: list[str], filters: mesos.Filters | None, now: float
) -> list[Effect]:
    """DECLINE: give the offers back with a filter; unknown or foreign offer ids are ignored, as in Mesos."""
    seconds = refuse_seconds(filters)
    for offer_id in offer_ids:
        offer = state.offers.get(offer_id)
        if offer is None or offer.framework_id != framework.id:
            continue
        take_offer(state, offer_id)
        state.allocator.recover(framework.id, offer.role, offer.agent_id, offer.resources, now, seconds)
    return []


def rescind(state: MasterState, offer: Offer, now: float, *, notify: bool = True) -> list[Effect]:
    """Take an offer back (no filter) and tell the framework, unless it cannot hear it."""
    take_offer(state, offer.id)
    state.allocator.recover(offer.framework_id, offer.role, offer.agent_id, offer.resources, now)
    if not notify:
        return []
    return [SendToFramework(offer.framework_id, Event(type="RESCIND", rescind=Rescind(offer_id=id_of(offer.id))))]


def rescind_framework_offers(state: MasterState, framework: Framework, now: float, *, notify: bool) -> list[Effect]:
    """Rescind every outstanding offer of a framework."""
    effects: list[Effect] = []
    for offer_id in sorted(framework.offers):
        effects += rescind(state, state.offers[offer_id], now, notify=notify)
    return effects


def rescind_agent_offers(state: MasterState, agent: Agent, now: float) -> list[Effect]:
    """Rescind every outstanding offer on an agent (it left or disconnected)."""
    effects: list[Effect] = []
    for offer_id in sorted(agent.offers):
        effects += rescind(state, state.offers[offer_id], now)
    return effects


def expire_offers(state: MasterState, now: float) -> list[Effect]:
    """``--offer_timeout``: rescind offers held longer than the timeout."""
    timeout = state.config.offer_timeout_s
    if timeout is None:
        return []
    stale = [o for o in state.offers.values() if now - o.created_at >= timeout]
    effects: list[Effect] = []
    for offer in stale:
        effects += rescind(state, offer, now)
    return effects
