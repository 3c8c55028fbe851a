"""The launch queue's bookkeeping: since when an app waits, and why offers did not fit it.

Pure. Feeds ``GET /v2/queue`` (``processedOffersSummary``, ``lastUnusedOffers``), so that a deployment that
cannot finish says why instead of hanging in silence.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import final

from butte.frameworks.marathon.control import UnusedOffer

LAST_UNUSED_OFFERS = 10


@final
@dataclass(slots=True)
class WaitingApp:
    """Offer statistics of one app since it started waiting."""

    since: float
    processed: int = 0
    unused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    last_unused: deque[UnusedOffer] = field(default_factory=lambda: deque(maxlen=LAST_UNUSED_OFFERS))

    def record_used(self) -> None:
        self.processed += 1

    def record_unused(self, unused: UnusedOffer) -> None:
        self.processed += 1
        self.unused += 1
        self.reasons.update(unused.reasons)
        self.last_unused.append(unused)


@final
class LaunchQueue:
    """Apps with tasks to launch, created when demand appears and dropped when it is met."""

    def __init__(self) -> None:
        self._waiting: dict[str, WaitingApp] = {}

    def update(self, demand: dict[str, int], now: float) -> None:
        for app_id in list(self._waiting):
            if demand.get(app_id, 0) <= 0:
                del self._waiting[app_id]
        for app_id, count in demand.items():
            if count > 0 and app_id not in self._waiting:
                self._waiting[app_id] = WaitingApp(since=now)

    def get(self, app_id: str) -> WaitingApp | None:
        return self._waiting.get(app_id)

    def app_ids(self) -> list[str]:
        return list(self._waiting)
