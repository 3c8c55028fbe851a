"""A frozen picture of the allocator's books: what the operator API, the metrics and the tests read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from butte.allocator.books import Books
from butte.allocator.sorter import DRFSorter


@final
@dataclass(frozen=True, slots=True)
class RoleShare:
    """One role: its weight, weighted dominant share, and quantities allocated to it."""

    role: str
    weight: float
    share: float
    allocated: Mapping[str, float]
    frameworks: tuple[str, ...]
    offerable: bool


@final
@dataclass(frozen=True, slots=True)
class FrameworkShare:
    """One framework within one role."""

    framework_id: str
    role: str
    share: float
    allocated: Mapping[str, float]
    offerable: bool


@final
@dataclass(frozen=True, slots=True)
class AllocatorSnapshot:
    """Shares by role and by framework, cluster totals, and counts."""

    roles: tuple[RoleShare, ...]
    frameworks: tuple[FrameworkShare, ...]
    weights: Mapping[str, float]
    total: Mapping[str, float]
    allocated: Mapping[str, float]
    agents: int
    active_agents: int
    active_filters: int

    def role(self, name: str) -> RoleShare | None:
        """The entry of one role, if it is tracked."""
        return next((r for r in self.roles if r.role == name), None)

    def framework(self, framework_id: str, role: str) -> FrameworkShare | None:
        """The entry of one framework in one role, if it is tracked."""
        return next((f for f in self.frameworks if f.framework_id == framework_id and f.role == role), None)


def take_snapshot(books: Books, active_filters: int) -> AllocatorSnapshot:
    """Copy the books into an :class:`AllocatorSnapshot`."""
    roles = tuple(_role_share(books, role) for role in sorted(books.roles.clients()))
    frameworks = tuple(
        _framework_share(sorter, framework_id, role)
        for role, sorter in sorted(books.framework_sorters.items())
        for framework_id in sorted(sorter.clients())
    )
    allocated: dict[str, int] = {}
    for role in books.roles.clients():
        for name, amount in books.roles.allocation(role).items():
            allocated[name] = allocated.get(name, 0) + amount
    return AllocatorSnapshot(
        roles=roles,
        frameworks=frameworks,
        weights=dict(books.weights),
        total=_as_floats(books.totals.quantities),
        allocated=_as_floats(allocated),
        agents=len(books.agents),
        active_agents=sum(1 for agent in books.agents.values() if agent.active),
        active_filters=active_filters,
    )


def _role_share(books: Books, role: str) -> RoleShare:
    sorter = books.roles
    members = books.framework_sorters[role].clients()
    offerable = sorter.is_active(role)
    return RoleShare(
        role,
        sorter.weight(role),
        sorter.share(role),
        _as_floats(sorter.allocation(role)),
        tuple(sorted(members)),
        offerable,
    )


def _framework_share(sorter: DRFSorter, framework_id: str, role: str) -> FrameworkShare:
    offerable = sorter.is_active(framework_id)
    allocated = _as_floats(sorter.allocation(framework_id))
    return FrameworkShare(framework_id, role, sorter.share(framework_id), allocated, offerable)


def _as_floats(quantities: Mapping[str, int]) -> dict[str, float]:
    return {name: amount / 1000 for name, amount in sorted(quantities.items())}
