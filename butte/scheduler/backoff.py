"""Reconnection backoff: doubling, capped, with random jitter so that many schedulers do not retry in step."""

from __future__ import annotations

import random
from typing import final


@final
class Backoff:
    """Delays for successive failed attempts; :meth:`reset` after a success.

    Each delay is drawn uniformly from the upper half of the current window (so it never collapses to
    zero), then the window doubles up to ``max_s``. The Mesos scheduler library does the same (a random
    delay within a doubling bound); pymesos doubles from 2 s up to 15 s.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._window_s = initial_s
        self._rng = rng

    def next_delay_s(self) -> float:
        """The delay before the next attempt; widens the window for the one after."""
        window = self._window_s
        self._window_s = min(window * 2, self._max_s)
        return window / 2 + self._rng.uniform(0, window / 2)

    def reset(self) -> None:
        """Start again from the initial window (after a successful attempt)."""
        self._window_s = self._initial_s
