"""Weighted DRF ordering in the manner of Mesos's ``DRFSorter``: the sorter orders clients, nothing more.

A client's share is its largest fraction of the cluster total over all resource names, divided by its
weight (names in ``excluded`` are skipped, Mesos's ``--fair_sharing_excluded_resource_names``). Ties go to
the client allocated fewer times, then to the smaller name, as in Mesos. Quantities are integer
thousandths (:meth:`butte.core.resources.Resources.milli_quantities`).

The order is kept incrementally: an allocation moves one client with two bisects, never a full re-sort
(the cost Mesos removed in ``apache/mesos@6ef0df93f``). The cluster total is one :class:`Totals` shared
by every sorter; changing it bumps a version, and each sorter rebuilds its order once, when next read.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence
from typing import final

SortKey = tuple[float, int, str]
"""``(weighted share, times allocated, client)``: the first of the sorted keys goes next."""


@final
class Totals:
    """The cluster's total quantities, shared by all sorters; ``version`` changes with every update."""

    __slots__ = ("_inverse", "_inverse_version", "quantities", "version")

    def __init__(self) -> None:
        self.quantities: dict[str, int] = {}
        self.version = 0
        self._inverse: dict[str, float] = {}
        self._inverse_version = -1

    def add(self, quantities: Mapping[str, int]) -> None:
        """Add an agent's total."""
        for name, amount in quantities.items():
            self.quantities[name] = self.quantities.get(name, 0) + amount
        self.version += 1

    def subtract(self, quantities: Mapping[str, int]) -> None:
        """Take away a removed agent's total."""
        for name, amount in quantities.items():
            left = self.quantities.get(name, 0) - amount
            if left > 0:
                self.quantities[name] = left
            else:
                self.quantities.pop(name, None)
        self.version += 1

    def inverse(self) -> Mapping[str, float]:
        """``1 / total`` by name, computed once per version (a share is then one multiply per name)."""
        if self._inverse_version != self.version:
            self._inverse = {name: 1.0 / amount for name, amount in self.quantities.items()}
            self._inverse_version = self.version
        return self._inverse


@final
class DRFSorter:
    """Clients ordered by weighted dominant share; only activated clients take part in the order."""

    __slots__ = (
        "_allocated",
        "_counts",
        "_excluded",
        "_keys",
        "_order",
        "_seen",
        "_shares",
        "_totals",
        "_weights",
    )

    def __init__(self, totals: Totals, excluded: frozenset[str] = frozenset()) -> None:
        self._totals = totals
        self._excluded = excluded
        self._seen = -1
        self._allocated: dict[str, dict[str, int]] = {}
        self._weights: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._shares: dict[str, float] = {}
        self._keys: dict[str, SortKey] = {}
        self._order: list[SortKey] = []

    def add(self, client: str, weight: float = 1.0) -> None:
        """Track a client (inactive, nothing allocated); adding a tracked client does nothing."""
        if client not in self._allocated:
            self._allocated[client] = {}
            self._weights[client] = weight
            self._counts[client] = 0
            self._shares[client] = 0.0

    def remove(self, client: str) -> None:
        """Forget a client entirely."""
        self.deactivate(client)
        for table in (self._allocated, self._weights, self._counts, self._shares):
            table.pop(client, None)

    def __contains__(self, client: str) -> bool:
        """Whether the client is tracked."""
        return client in self._allocated

    def __len__(self) -> int:
        """Number of tracked clients."""
        return len(self._allocated)

    def active_count(self) -> int:
        """Number of clients taking part in the order."""
        return len(self._keys)

    def is_active(self, client: str) -> bool:
        """Whether the client takes part in the order."""
        return client in self._keys

    def activate(self, client: str) -> None:
        """Put a tracked client into the order."""
        if client not in self._keys:
            key = (self._shares[client], self._counts[client], client)
            self._keys[client] = key
            if self._fresh():
                insort(self._order, key)

    def deactivate(self, client: str) -> None:
        """Take a client out of the order; its allocation still counts."""
        key = self._keys.pop(client, None)
        if key is not None and self._fresh():
            del self._order[bisect_left(self._order, key)]

    def allocated(self, client: str, quantities: Mapping[str, int]) -> None:
        """Record that ``client`` was given ``quantities``."""
        vector = self._allocated[client]
        for name, amount in quantities.items():
            vector[name] = vector.get(name, 0) + amount
        self._counts[client] += 1
        if self._seen == self._totals.version:
            self._reshare(client)

    def unallocated(self, client: str, quantities: Mapping[str, int]) -> None:
        """Record that ``client`` gave ``quantities`` back."""
        vector = self._allocated[client]
        for name, amount in quantities.items():
            left = vector.get(name, 0) - amount
            if left > 0:
                vector[name] = left
            else:
                vector.pop(name, None)
        self._reshare(client)

    def update_weight(self, client: str, weight: float) -> None:
        """Change a client's weight."""
        self._weights[client] = weight
        self._reshare(client)

    def share(self, client: str) -> float:
        """The client's weighted dominant share."""
        self._refresh()
        return self._shares[client]

    def weight(self, client: str) -> float:
        """The client's weight."""
        return self._weights[client]

    def allocation(self, client: str) -> Mapping[str, int]:
        """What the client holds, in thousandths by name."""
        return self._allocated[client]

    def clients(self) -> list[str]:
        """Every tracked client, in the order they were added."""
        return list(self._allocated)

    def order(self) -> Sequence[SortKey]:
        """Active clients, lowest share first; read it, do not keep it across updates."""
        self._refresh()
        return self._order

    def _fresh(self) -> bool:
        return self._seen == self._totals.version

    def _refresh(self) -> None:
        if self._fresh():
            return
        for client in self._allocated:
            self._shares[client] = self._compute(client)
        self._keys = {c: (self._shares[c], self._counts[c], c) for c in self._keys}
        self._order = sorted(self._keys.values())
        self._seen = self._totals.version

    def _reshare(self, client: str) -> None:
        if self._seen != self._totals.version:
            return  # the next read recomputes every share anyway
        share = self._compute(client)
        self._shares[client] = share
        old = self._keys.get(client)
        if old is not None:
            del self._order[bisect_left(self._order, old)]
            key = (share, self._counts[client], client)
            self._keys[client] = key
            insort(self._order, key)

    def _compute(self, client: str) -> float:
        best = 0.0
        inverse = self._totals.inverse()
        excluded = self._excluded
        for name, amount in self._allocated[client].items():
            fraction = amount * inverse.get(name, 0.0)
            if fraction > best and name not in excluded:
                best = fraction
        return best / self._weights[client]
