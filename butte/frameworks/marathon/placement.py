"""Offer matching for Marathon apps: roles, scalars, constraints, scarce GPUs, then host ports.

Pure. :func:`match_offer` fits up to ``count`` tasks of one app into one offer, each taken out of what the
previous ones left, and each counted as placed for the constraints of the next (so ``UNIQUE hostname``
allows one task per offer). A task that does not fit is explained with Marathon's ``NoOfferMatchReason``
names, which ``/v2/queue`` shows in ``processedOffersSummary``. Random host ports come from the seeded
``rng`` so a decision can be replayed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, final

from butte.core import ranges
from butte.core.ranges import RangeList
from butte.core.resources import DEFAULT_ROLE, Entry, Resources
from butte.frameworks.marathon.constraints import attributes_of, check_constraint
from butte.frameworks.marathon.model import Instance
from butte.scheduler.tasks import claim_scalars, offer_resources
from butte.wire.marathon import App
from butte.wire.mesos import Offer

Reason = Literal[
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
]
REASONS: tuple[Reason, ...] = (
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
)
"""Every reason, in the order of Marathon's ``NoOfferMatchReason`` enum."""

GpuSchedulingBehavior = Literal["restricted", "unrestricted"]

_SCALAR_REASONS: tuple[tuple[str, Reason], ...] = (
    ("cpus", "InsufficientCpus"),
    ("mem", "InsufficientMemory"),
    ("disk", "InsufficientDisk"),
    ("gpus", "InsufficientGpus"),
)


@final
@dataclass(frozen=True, slots=True)
class Claim:
    """What one task takes from an offer: every resource (scalars and its host ports, in the roles they came
    from) and the host ports in ``portDefinitions`` order."""

    resources: Resources
    host_ports: tuple[int, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a task did not fit an offer: Marathon's NoOfferMatchReason names."""

    reasons: tuple[str, ...]


def match_offer(
    app: App,
    offer: Offer,
    placed: Sequence[Instance],
    *,
    count: int,
    rng: random.Random,
    gpu_scheduling_behavior: GpuSchedulingBehavior = "restricted",
) -> tuple[list[Claim], Rejection | None]:
    """Up to ``count`` tasks of ``app`` on ``offer``; the Rejection explains the first task that did not fit.

    Raises:
        ValidationError: the offer holds a malformed resource.
    """
    left = accepted_resources(app, offer_resources(offer))
    standing = _offer_reasons(app, offer, left, gpu_scheduling_behavior)
    attributes = attributes_of(offer)
    placements = list(placed)
    claims: list[Claim] = []
    for _ in range(count):
        reasons = standing + _task_reasons(app, offer.hostname, attributes, left, placements)
        claim = None if reasons else _claim(app, left, rng)
        if claim is None:
            return claims, Rejection(reasons or ("InsufficientPorts",))
        claims.append(claim)
        left = left - claim.resources
        placements.append(_placement(app, offer, attributes, claim))
    return claims, None


def accepted_resources(app: App, offered: Resources) -> Resources:
    """The part of an offer the app may use: with ``acceptedResourceRoles`` only those roles, else all."""
    roles = app.accepted_resource_roles
    if roles is None:
        return offered
    return Resources.sum(offered.filter_role(role) for role in set(roles))


def summarize(rejections: Iterable[Rejection]) -> dict[str, int]:
    """How often each reason was given, every reason listed (``processedOffersSummary``)."""
    counts = Counter(reason for rejection in rejections for reason in rejection.reasons)
    return {reason: counts.get(reason, 0) for reason in REASONS}


def _offer_reasons(
    app: App, offer: Offer, usable: Resources, gpu_scheduling_behavior: GpuSchedulingBehavior
) -> tuple[Reason, ...]:
    reasons: list[Reason] = []
    # Marathon's ResourceMatcher: not one resource of an accepted role in the offer.
    if usable.is_empty() and offer.resources:
        reasons.append("UnfulfilledRole")
    # Marathon keeps GPU agents for GPU apps unless --gpu_scheduling_behavior=unrestricted.
    if gpu_scheduling_behavior == "restricted" and app.gpus == 0 and usable.scalar("gpus") > 0:
        reasons.append("DeclinedScarceResources")
    return tuple(reasons)


def _task_reasons(
    app: App, hostname: str, attributes: dict[str, str], left: Resources, placed: Sequence[Instance]
) -> tuple[Reason, ...]:
    wanted = _scalars_wanted(app)
    reasons: list[Reason] = [
        reason
        for name, reason in _SCALAR_REASONS
        if name in wanted and claim_scalars(left, {name: wanted[name]}) is None
    ]
    if any(check_constraint(c, hostname, attributes, placed) is not None for c in app.constraints):
        reasons.append("UnfulfilledConstraint")
    return tuple(reasons)


def _scalars_wanted(app: App) -> dict[str, float]:
    amounts = {"cpus": app.cpus, "mem": app.mem, "disk": app.disk, "gpus": float(app.gpus)}
    return {name: amount for name, amount in amounts.items() if amount > 0}


def _claim(app: App, left: Resources, rng: random.Random) -> Claim | None:
    scalars = claim_scalars(left, _scalars_wanted(app))
    if scalars is None:
        return None
    ports = claim_ports(app, left, rng)
    if ports is None:
        return None
    port_resources, host_ports = ports
    return Claim(resources=scalars + port_resources, host_ports=host_ports)


def claim_ports(app: App, available: Resources, rng: random.Random) -> tuple[Resources, tuple[int, ...]] | None:
    """One host port per port definition, or None when the offer's ports cannot cover them.

    With ``requirePorts`` a declared port must be offered as is; otherwise every port is picked at random
    from the free ones (Marathon treats declared ports as service ports then).
    """
    pools = _port_pools(available)
    chosen: list[tuple[str, int] | None] = []
    for definition in app.port_definitions:
        fixed = definition.port if app.require_ports and definition.port != 0 else None
        chosen.append(None if fixed is None else _take_port(pools, fixed))
        if fixed is not None and chosen[-1] is None:
            return None
    for index, picked in enumerate(chosen):
        if picked is None:
            chosen[index] = _take_random_port(pools, rng)
            if chosen[index] is None:
                return None
    taken = [pair for pair in chosen if pair is not None]
    resources = Resources.from_entries(Entry("ports", role, ((port, port),)) for role, port in taken)
    return resources, tuple(port for _, port in taken)


def _port_pools(available: Resources) -> dict[str, RangeList]:
    # Reserved roles first, then "*", as Mesos's Resources::find prefers reservations.
    roles = sorted(available.roles(), key=lambda role: (role == DEFAULT_ROLE, role))
    pools = {role: tuple(available.filter_role(role).ranges("ports")) for role in roles}
    return {role: pool for role, pool in pools.items() if pool}


def _take_port(pools: dict[str, RangeList], port: int) -> tuple[str, int] | None:
    for role, pool in pools.items():
        if ranges.contains(pool, ((port, port),)):
            pools[role] = ranges.subtract(pool, ((port, port),))
            return role, port
    return None


def _take_random_port(pools: dict[str, RangeList], rng: random.Random) -> tuple[str, int] | None:
    total = sum(ranges.count(pool) for pool in pools.values())
    if total == 0:
        return None
    index = rng.randrange(total)
    for role, pool in pools.items():
        for begin, end in pool:
            if index <= end - begin:
                port = begin + index
                pools[role] = ranges.subtract(pool, ((port, port),))
                return role, port
            index -= end - begin + 1
    return None  # unreachable: index < total


def _placement(app: App, offer: Offer, attributes: dict[str, str], claim: Claim) -> Instance:
    # Only host and attributes matter to the constraints of the next task in this offer.
    return Instance(
        task_id="",
        app_id=app.id,
        version=app.version or "",
        config_version="",
        agent_id=offer.agent_id.value,
        host=offer.hostname,
        staged_at=0.0,
        ports=claim.host_ports,
        attributes=attributes,
    )
