"""Hierarchical weighted DRF allocation, in the manner of Mesos's ``HierarchicalDRFAllocator``.

The master tells the allocator every change (agents, frameworks, recovered resources, suppress/revive,
weights) and calls :meth:`HierarchicalAllocator.allocate` on its batch interval and on events. A pass
visits agents in a seeded shuffle; each agent's free resources go to the role with the lowest weighted
dominant share that has a framework able to take them, and within the role to the framework with the
lowest share that is active, not suppressed for the role and not filtered on the agent. What an
allocation hands out counts as held at once, so the shares of the next agent's choice already see it.
Resources reserved for a role go only to that role's frameworks; ``*`` resources go to anyone. Held
resources stay held (offered, or used by tasks) until the master recovers them.

Pure: no clock, no I/O; ``now`` is an argument and the shuffle uses the injected ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import final

from butte.allocator.books import AgentBook, Books, FrameworkBook
from butte.allocator.filters import OfferFilters, refuse_timeout
from butte.allocator.snapshot import AllocatorSnapshot, take_snapshot
from butte.core.errors import ValidationError
from butte.core.resources import Resources

DEFAULT_MIN_ALLOCATABLE = Resources.parse("cpus:0.01;mem:32")
"""Mesos's ``--min_allocatable_resources`` default ``cpus:0.01|mem:32``: each entry is one alternative."""

_NO_WEIGHTS: Mapping[str, float] = MappingProxyType({})


@final
@dataclass(frozen=True, slots=True)
class Allocation:
    """Resources on one agent handed to one framework for one role: the master turns it into an offer."""

    framework_id: str
    role: str
    agent_id: str
    resources: Resources


@final
class HierarchicalAllocator:
    """Keeps the books of who holds what and decides who is offered what; the master owns the truth."""

    def __init__(
        self,
        *,
        rng: random.Random,
        weights: Mapping[str, float] = _NO_WEIGHTS,
        min_allocatable: Resources | None = None,
        fair_sharing_excluded: frozenset[str] = frozenset(),
    ) -> None:
        """Start with no agents and no frameworks.

        Raises:
            ValidationError: a weight is not a positive number.
        """
        _check_weights(weights)
        minimum = DEFAULT_MIN_ALLOCATABLE if min_allocatable is None else min_allocatable
        self._rng = rng
        self._minimum = tuple(minimum.milli_quantities().items())
        self._books = Books(weights, fair_sharing_excluded)
        self._filters = OfferFilters()

    def add_agent(self, agent_id: str, total: Resources, used: Mapping[tuple[str, str], Resources], now: float) -> None:
        """Add an agent; ``used``, keyed by (framework_id, role), is already held (e.g. tasks it reports).

        Raises:
            ValueError: the agent is already known, or ``used`` is not contained in ``total``.
        """
        books = self._books
        if agent_id in books.agents:
            raise ValueError(f"agent {agent_id} already added")
        books.agents[agent_id] = AgentBook(total)
        books.totals.add(books.agents[agent_id].total_q)
        for (framework_id, role), resources in used.items():
            if not resources.is_empty():
                books.hold(agent_id, framework_id, role, resources, resources.milli_quantities())

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent and everything held on it; unknown ids are ignored."""
        books = self._books
        if agent_id in books.agents:
            books.release_agent(agent_id)
            books.totals.subtract(books.agents.pop(agent_id).total_q)
            self._filters.clear_agent(agent_id)

    def activate_agent(self, agent_id: str) -> None:
        """Offer the agent's resources again."""
        if agent_id in self._books.agents:
            self._books.agents[agent_id].active = True

    def deactivate_agent(self, agent_id: str) -> None:
        """Stop offering the agent's resources (what is held stays held)."""
        if agent_id in self._books.agents:
            self._books.agents[agent_id].active = False

    def add_framework(
        self,
        framework_id: str,
        roles: frozenset[str],
        suppressed_roles: frozenset[str],
        now: float,
        *,
        active: bool = True,
    ) -> None:
        """Add a framework subscribed to ``roles``.

        Raises:
            ValueError: the framework is already known.
        """
        if framework_id in self._books.frameworks:
            raise ValueError(f"framework {framework_id} already added")
        self._books.frameworks[framework_id] = FrameworkBook(roles, suppressed_roles, active)
        self._books.sync_all(framework_id)

    def update_framework(self, framework_id: str, roles: frozenset[str], suppressed_roles: frozenset[str]) -> None:
        """Change a framework's roles and suppressed roles; filters for roles it left are dropped."""
        framework = self._books.frameworks.get(framework_id)
        if framework is None:
            return
        left = framework.roles - roles
        framework.roles, framework.suppressed = roles, suppressed_roles
        self._filters.clear_framework(framework_id, left)
        self._books.sync_all(framework_id, left)

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework and free everything it holds; unknown ids are ignored."""
        framework = self._books.frameworks.pop(framework_id, None)
        self._books.release_all(framework_id)
        self._filters.clear_framework(framework_id)
        self._books.sync_all(framework_id, framework.roles if framework else frozenset())

    def activate_framework(self, framework_id: str) -> None:
        """Offer to the framework again."""
        self._set_active(framework_id, True)

    def deactivate_framework(self, framework_id: str) -> None:
        """Stop offering to the framework; it keeps what it holds and (as in Mesos) loses its filters."""
        self._set_active(framework_id, False)
        self._filters.clear_framework(framework_id)

    def recover(
        self,
        framework_id: str,
        role: str,
        agent_id: str,
        resources: Resources,
        now: float,
        refuse_seconds: float | None = None,
    ) -> None:
        """Take back resources the framework held (a decline, the unused part of an accept, a finished task).

        With ``refuse_seconds`` (> 0) the framework is not offered these resources on this agent again
        until ``now + refuse_seconds`` (capped at one year). Resources of a removed agent or of a
        framework that no longer holds anything there are ignored, as the master may be late.

        Raises:
            ValueError: the framework holds something on the agent for the role, but not these resources.
        """
        book = self._books.agents.get(agent_id)
        if book is None or resources.is_empty() or (framework_id, role) not in book.held:
            return
        self._books.release(agent_id, framework_id, role, resources)
        timeout = None if refuse_seconds is None else refuse_timeout(refuse_seconds)
        if timeout is not None and framework_id in self._books.frameworks:
            self._filters.add(framework_id, role, agent_id, resources, now + timeout)

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        """One allocation pass over all agents (or the given ones), in a seeded shuffle."""
        self._filters.expire(now)
        agents = self._books.agents
        wanted = agents if agent_ids is None else dict.fromkeys(agent_ids)
        candidates = [a for a in wanted if a in agents and agents[a].active and not agents[a].available.is_empty()]
        self._rng.shuffle(candidates)
        allocations: list[Allocation] = []
        for agent_id in candidates:
            self._allocate_agent(agent_id, agents[agent_id], now, allocations)
        return allocations

    def suppress(self, framework_id: str, roles: frozenset[str] | None) -> None:
        """Stop offering to the framework for ``roles`` (None: all its roles) until it revives."""
        framework = self._books.frameworks.get(framework_id)
        if framework is not None:
            framework.suppressed |= framework.roles if roles is None else roles
            self._books.sync_all(framework_id)

    def revive(self, framework_id: str, roles: frozenset[str] | None) -> None:
        """Clear the framework's filters and unsuppress it, for ``roles`` (None: all its roles)."""
        framework = self._books.frameworks.get(framework_id)
        if framework is not None:
            framework.suppressed -= framework.roles if roles is None else roles
            self._filters.clear_framework(framework_id, roles)
            self._books.sync_all(framework_id)

    def update_weights(self, weights: Mapping[str, float]) -> None:
        """Set the weights of the given roles (others keep theirs; the default is 1.0).

        Raises:
            ValidationError: a weight is not a positive number.
        """
        _check_weights(weights)
        self._books.set_weights(weights)

    def expire_filters(self, now: float) -> None:
        """Drop filters whose deadline has come (:meth:`allocate` also does this first)."""
        self._filters.expire(now)

    def available(self, agent_id: str) -> Resources:
        """What is free on an agent (empty for an unknown one)."""
        book = self._books.agents.get(agent_id)
        return Resources.empty() if book is None else book.available

    def snapshot(self) -> AllocatorSnapshot:
        """Shares, weights, holdings and totals, for the operator API, metrics and tests."""
        return take_snapshot(self._books, self._filters.count())

    def _set_active(self, framework_id: str, active: bool) -> None:
        framework = self._books.frameworks.get(framework_id)
        if framework is not None:
            framework.active = active
            self._books.sync_all(framework_id)

    def _allocate_agent(self, agent_id: str, book: AgentBook, now: float, out: list[Allocation]) -> None:
        # Without reservations one offer takes everything free; with them, each further pick can only
        # take another role's reserved part, so the loop ends after at most one pick per role.
        while not book.available.is_empty():
            pick = self._pick(agent_id, book, now)
            if pick is None:
                return
            framework_id, role, offer, quantities = pick
            self._books.hold(agent_id, framework_id, role, offer, quantities)
            out.append(Allocation(framework_id, role, agent_id, offer))

    def _pick(self, agent_id: str, book: AgentBook, now: float) -> tuple[str, str, Resources, Mapping[str, int]] | None:
        filters = self._filters
        sorters = self._books.framework_sorters
        for _, _, role in self._books.roles.order():
            offer, quantities = book.offer_for(role)
            if not self._worth_offering(offer, quantities):
                continue
            for _, _, framework_id in sorters[role].order():
                if not filters.filtered(framework_id, role, agent_id, offer, now):
                    return framework_id, role, offer, quantities
        return None

    def _worth_offering(self, offer: Resources, quantities: Mapping[str, int]) -> bool:
        if offer.is_empty():
            return False
        if not self._minimum:
            return True
        return any(quantities.get(name, 0) >= amount for name, amount in self._minimum)


def _check_weights(weights: Mapping[str, float]) -> None:
    for role, weight in weights.items():
        if not weight > 0 or weight == float("inf"):
            raise ValidationError(f"weights.{role}", f"weight must be a positive number, got {weight}")
