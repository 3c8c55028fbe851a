"""The allocator's books: each agent's total, what is free on it and who holds what, plus the DRF sorters.

One role sorter orders the roles; each role has a framework sorter ordering its frameworks (Mesos's
two-level ``HierarchicalDRFAllocator``). A sorter tracks a client while it is subscribed to the role or
holds resources in it, and puts it into the order only while it may be offered resources: registered,
active, subscribed and not suppressed. A role is in the role order while one of its frameworks is.
Resources held by a framework the allocator does not know yet (found on agent reregistration) count
towards their role's share until that framework subscribes or they are recovered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from butte.allocator.sorter import DRFSorter, Totals
from butte.core.resources import DEFAULT_ROLE, Resources

HoldKey = tuple[str, str]
"""``(framework_id, role)``."""


@final
class AgentBook:
    """One agent: its total, what is free, and what each (framework, role) holds on it."""

    __slots__ = ("active", "available", "available_q", "held", "reserved_roles", "total", "total_q")

    def __init__(self, total: Resources) -> None:
        self.total = total
        self.total_q = total.milli_quantities()
        self.available = total
        self.available_q: Mapping[str, int] = dict(self.total_q)
        self.held: dict[HoldKey, Resources] = {}
        self.active = True
        self.reserved_roles = frozenset(total.roles() - {DEFAULT_ROLE})

    def offer_for(self, role: str) -> tuple[Resources, Mapping[str, int]]:
        """What a framework in ``role`` may be offered here: the free unreserved part plus its role's."""
        if not self.reserved_roles:
            return self.available, self.available_q
        offer = self.available.unreserved()
        if role in self.reserved_roles:
            offer = offer + self.available.filter_role(role)
        return offer, offer.milli_quantities()

    def take(self, key: HoldKey, resources: Resources) -> None:
        """Move free resources to a holder.

        Raises:
            ValueError: the resources are not free on this agent.
        """
        if resources is self.available:  # the usual offer: everything that is free
            self.available, self.available_q = Resources.empty(), {}
        else:
            self.available = self.available - resources
            self.available_q = self.available.milli_quantities()
        held = self.held.get(key)
        self.held[key] = resources if held is None else held + resources

    def give_back(self, key: HoldKey, resources: Resources) -> None:
        """Move held resources back to free.

        Raises:
            ValueError: the holder does not hold them.
        """
        left = self.held.get(key, Resources.empty()) - resources
        if left.is_empty():
            self.held.pop(key, None)
        else:
            self.held[key] = left
        self.available = self.available + resources
        self.available_q = self.available.milli_quantities()


@final
@dataclass(slots=True)
class FrameworkBook:
    """What the allocator knows of a framework."""

    roles: frozenset[str]
    suppressed: frozenset[str]
    active: bool

    def wants(self, role: str) -> bool:
        """Whether it may be offered resources for ``role`` now."""
        return self.active and role in self.roles and role not in self.suppressed


@final
class Books:
    """Agents, frameworks, who holds what where, and the sorters kept in step with them."""

    __slots__ = (
        "_excluded",
        "agents",
        "framework_sorters",
        "frameworks",
        "holdings",
        "roles",
        "totals",
        "weights",
    )

    def __init__(self, weights: Mapping[str, float], excluded: frozenset[str]) -> None:
        self.agents: dict[str, AgentBook] = {}
        self.frameworks: dict[str, FrameworkBook] = {}
        self.holdings: dict[str, dict[str, set[str]]] = {}  # framework -> role -> agents it holds on
        self.totals = Totals()
        self.roles = DRFSorter(self.totals, excluded)
        self.framework_sorters: dict[str, DRFSorter] = {}
        self.weights = dict(weights)
        self._excluded = excluded

    def hold(self, agent_id: str, framework_id: str, role: str, resources: Resources, q: Mapping[str, int]) -> None:
        """Count ``resources`` (with quantities ``q``) as held by the framework in ``role`` on the agent.

        Raises:
            ValueError: the resources are not free on the agent.
        """
        self.agents[agent_id].take((framework_id, role), resources)
        self.holdings.setdefault(framework_id, {}).setdefault(role, set()).add(agent_id)
        sorter = self._track(framework_id, role)
        self.roles.allocated(role, q)
        sorter.allocated(framework_id, q)

    def release(self, agent_id: str, framework_id: str, role: str, resources: Resources) -> None:
        """Give held resources back to the agent.

        Raises:
            ValueError: the framework does not hold them there.
        """
        book = self.agents[agent_id]
        book.give_back((framework_id, role), resources)
        if (framework_id, role) not in book.held:
            self._forget_holding(framework_id, role, agent_id)
        q = resources.milli_quantities()
        self.roles.unallocated(role, q)
        self.framework_sorters[role].unallocated(framework_id, q)
        self.sync(framework_id, role)

    def release_all(self, framework_id: str) -> None:
        """Give back everything a framework holds, on every agent and in every role."""
        for role, agent_ids in list(self.holdings.get(framework_id, {}).items()):
            for agent_id in sorted(agent_ids):
                held = self.agents[agent_id].held[(framework_id, role)]
                self.release(agent_id, framework_id, role, held)

    def release_agent(self, agent_id: str) -> None:
        """Give back everything held on an agent (before it is removed)."""
        for (framework_id, role), held in list(self.agents[agent_id].held.items()):
            self.release(agent_id, framework_id, role, held)

    def sync(self, framework_id: str, role: str) -> None:
        """Bring the sorters in line with whether the framework may be offered ``role`` resources now."""
        framework = self.frameworks.get(framework_id)
        if framework is not None and framework.wants(role):
            self._track(framework_id, role).activate(framework_id)
        elif role in self.framework_sorters:
            self.framework_sorters[role].deactivate(framework_id)
        self._untrack_if_idle(framework_id, role)
        sorter = self.framework_sorters.get(role)
        if sorter is not None and sorter.active_count():
            self.roles.activate(role)
        elif sorter is not None:
            self.roles.deactivate(role)

    def sync_all(self, framework_id: str, roles: frozenset[str] = frozenset()) -> None:
        """:meth:`sync` every role the framework is subscribed to, holds resources in, or ``roles``."""
        framework = self.frameworks.get(framework_id)
        subscribed = framework.roles if framework is not None else frozenset()
        held = self.holdings.get(framework_id, {}).keys()
        for role in sorted(subscribed | held | roles):
            self.sync(framework_id, role)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change the weights of the given roles; others keep theirs."""
        self.weights.update(weights)
        for role, weight in weights.items():
            if role in self.roles:
                self.roles.update_weight(role, weight)

    def _track(self, framework_id: str, role: str) -> DRFSorter:
        sorter = self.framework_sorters.get(role)
        if sorter is None:
            sorter = DRFSorter(self.totals, self._excluded)
            self.framework_sorters[role] = sorter
            self.roles.add(role, self.weights.get(role, 1.0))
        sorter.add(framework_id)
        return sorter

    def _untrack_if_idle(self, framework_id: str, role: str) -> None:
        sorter = self.framework_sorters.get(role)
        if sorter is None or framework_id not in sorter:
            return
        framework = self.frameworks.get(framework_id)
        if (framework is not None and role in framework.roles) or role in self.holdings.get(framework_id, {}):
            return
        sorter.remove(framework_id)
        if not len(sorter):
            del self.framework_sorters[role]
            self.roles.remove(role)

    def _forget_holding(self, framework_id: str, role: str, agent_id: str) -> None:
        by_role = self.holdings[framework_id]
        by_role[role].discard(agent_id)
        if not by_role[role]:
            del by_role[role]
        if not by_role:
            del self.holdings[framework_id]
