"""Agent liveness from pongs, and the rate-limited decision to mark an agent unreachable (pure).

Mesos's master pings every agent each ``--agent_ping_timeout`` (15 s) and, after
``--max_agent_ping_timeouts`` (5) pings in a row go unanswered, marks it unreachable. We keep the time of
the agent's last message instead of a miss counter: an agent whose last pong is older than
timeout * max has missed that many pings. Counted from the last pong, a partition is noticed between
(total - one interval) and the total after the cut; Mesos's counter, which starts at the first unanswered
ping, takes between the total and (total + one interval). ``--agent_removal_rate_limit`` (``N/duration``,
none by default) spaces removals so a mass partition does not look like mass death; an agent that answers while it waits
for its turn is simply no longer overdue, which is how Mesos cancels a pending removal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from butte.core.durations import format_duration, parse_duration
from butte.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class RemovalRateLimit:
    """At most ``removals`` agents marked unreachable per ``per_s`` seconds."""

    removals: int
    per_s: float

    def __str__(self) -> str:
        return f"{self.removals}/{format_duration(self.per_s)}"

    @property
    def spacing_s(self) -> float:
        """The least time between two removals (Mesos's RateLimiter hands out permits evenly)."""
        return self.per_s / self.removals


def parse_removal_rate(text: str) -> RemovalRateLimit:
    """``1/10mins`` into a :class:`RemovalRateLimit`.

    Raises:
        ValidationError: not ``<positive integer>/<duration>``.
    """
    count, sep, duration = text.partition("/")
    if not sep or not count.strip().isdigit() or int(count) <= 0:
        raise ValidationError("agent_removal_rate_limit", f"expected N/duration like 1/10mins, got {text!r}")
    per_s = parse_duration(duration.strip(), field="agent_removal_rate_limit")
    if per_s <= 0:
        raise ValidationError("agent_removal_rate_limit", "the duration must be positive")
    return RemovalRateLimit(removals=int(count), per_s=per_s)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What the health check knows, for tests and metrics."""

    ping_timeout_s: float
    max_ping_timeouts: int
    rate_limit: RemovalRateLimit | None
    removals: int
    last_removal: float | None


@final
class AgentHealth:
    """Decides which silent agents to mark unreachable now."""

    def __init__(
        self, ping_timeout_s: float, max_ping_timeouts: int, rate_limit: RemovalRateLimit | None = None
    ) -> None:
        self.ping_timeout_s = ping_timeout_s
        self.max_ping_timeouts = max_ping_timeouts
        self.rate_limit = rate_limit
        self._removals = 0
        self._last_removal: float | None = None

    @property
    def window_s(self) -> float:
        """How long an agent may stay silent: ping timeout * max missed pings."""
        return self.ping_timeout_s * self.max_ping_timeouts

    def overdue(self, last_pongs: Mapping[str, float], now: float) -> list[str]:
        """Agents silent for the whole window, longest silent first (ties by id, so replays agree)."""
        late = [agent_id for agent_id, pong in last_pongs.items() if now - pong >= self.window_s]
        return sorted(late, key=lambda agent_id: (last_pongs[agent_id], agent_id))

    def to_mark_unreachable(self, last_pongs: Mapping[str, float], now: float) -> list[str]:
        """The overdue agents the rate limit lets us mark now; each one uses a permit."""
        chosen: list[str] = []
        for agent_id in self.overdue(last_pongs, now):
            if not self._take_permit(now):
                break
            chosen.append(agent_id)
        return chosen

    def _take_permit(self, now: float) -> bool:
        limit = self.rate_limit
        if limit is not None and self._last_removal is not None and now - self._last_removal < limit.spacing_s:
            return False
        self._removals += 1
        self._last_removal = now
        return True

    def snapshot(self) -> HealthSnapshot:
        """Counters and settings."""
        return HealthSnapshot(
            ping_timeout_s=self.ping_timeout_s,
            max_ping_timeouts=self.max_ping_timeouts,
            rate_limit=self.rate_limit,
            removals=self._removals,
            last_removal=self._last_removal,
        )
