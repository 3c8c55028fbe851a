"""Offer filters: a framework that declined resources on an agent is not offered them again for a while.

As Mesos's ``RefusedOfferFilter``: a filter holds the refused resources and a deadline, per (agent, role,
framework); it stops a later offer whose resources are all contained in the refused ones, so an agent
that gained resources is offered again at once. ``refuse_seconds`` follows ``Filters.refuse_seconds``:
default 5 s, capped at one year, and (our rule, stated by the master's API) zero or less means no filter.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from butte.core.resources import Resources

DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 31_536_000.0
"""One year, Mesos's cap on ``refuse_seconds``."""

FilterKey = tuple[str, str, str]
"""``(agent_id, role, framework_id)``."""


def refuse_timeout(refuse_seconds: float) -> float | None:
    """How long a filter lasts: None for no filter (``<= 0``), the default for NaN, at most one year."""
    if math.isnan(refuse_seconds):
        return DEFAULT_REFUSE_SECONDS
    if refuse_seconds <= 0:
        return None
    return min(refuse_seconds, MAX_REFUSE_SECONDS)


@final
@dataclass(frozen=True, slots=True)
class Refusal:
    """Resources a framework refused on one agent, and until when."""

    refused: Resources
    deadline: float


@final
class OfferFilters:
    """Active refusals, indexed for the allocation loop (by key) and for clearing (by framework, by agent)."""

    __slots__ = ("_by_agent", "_by_framework", "_by_key", "_deadlines", "_live", "_sequence")

    def __init__(self) -> None:
        self._by_key: dict[FilterKey, list[Refusal]] = {}
        self._by_framework: dict[str, set[FilterKey]] = {}
        self._by_agent: dict[str, set[FilterKey]] = {}
        self._deadlines: list[tuple[float, int, FilterKey]] = []
        self._sequence = 0
        self._live = 0

    def add(self, framework_id: str, role: str, agent_id: str, refused: Resources, deadline: float) -> None:
        """Install a refusal that lasts until ``deadline``."""
        key = (agent_id, role, framework_id)
        self._by_key.setdefault(key, []).append(Refusal(refused, deadline))
        self._by_framework.setdefault(framework_id, set()).add(key)
        self._by_agent.setdefault(agent_id, set()).add(key)
        self._sequence += 1
        self._live += 1
        heapq.heappush(self._deadlines, (deadline, self._sequence, key))
        if len(self._deadlines) > 4 * self._live + 1024:
            self._compact()

    def filtered(self, framework_id: str, role: str, agent_id: str, offer: Resources, now: float) -> bool:
        """Whether an unexpired refusal covers this offer."""
        refusals = self._by_key.get((agent_id, role, framework_id))
        if refusals is None:
            return False
        return any(r.deadline > now and r.refused.contains(offer) for r in refusals)

    def expire(self, now: float) -> None:
        """Drop every refusal whose deadline is at or before ``now``."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, key = heapq.heappop(deadlines)
            refusals = self._by_key.get(key)
            if refusals is not None:
                left = [r for r in refusals if r.deadline > now]
                if left:
                    self._live -= len(refusals) - len(left)
                    self._by_key[key] = left
                else:
                    self._drop([key])

    def clear_framework(self, framework_id: str, roles: frozenset[str] | None = None) -> None:
        """Drop a framework's refusals, for some roles or (None) all of them."""
        keys = self._by_framework.get(framework_id, set())
        self._drop([k for k in keys if roles is None or k[1] in roles])

    def clear_agent(self, agent_id: str) -> None:
        """Drop every refusal on an agent."""
        self._drop(list(self._by_agent.get(agent_id, ())))

    def count(self) -> int:
        """Number of refusals held (those past their deadline go at the next :meth:`expire`)."""
        return self._live

    def _drop(self, keys: Iterable[FilterKey]) -> None:
        # Heap entries of dropped keys stay behind, are skipped when they come up, and are compacted away
        # when they outnumber the live refusals (revive drops many before their deadline).
        for key in keys:
            agent_id, _, framework_id = key
            self._live -= len(self._by_key.pop(key, ()))
            _discard(self._by_framework, framework_id, key)
            _discard(self._by_agent, agent_id, key)

    def _compact(self) -> None:
        self._deadlines = [
            (refusal.deadline, index, key)
            for index, (key, refusals) in enumerate(self._by_key.items())
            for refusal in refusals
        ]
        heapq.heapify(self._deadlines)


def _discard(index: dict[str, set[FilterKey]], owner: str, key: FilterKey) -> None:
    keys = index.get(owner)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[owner]
