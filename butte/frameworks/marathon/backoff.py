"""Marathon's launch backoff: after each failed task an app waits longer before its next launch.

Pure: no clock inside, every call takes ``now`` (POSIX seconds). Marathon's rules (``docs/docs/backoff.md``,
``RateLimiter``): the first failure sets the delay to ``backoffSeconds``; each further one multiplies it by
``backoffFactor``, capped at ``maxLaunchDelaySeconds``; the delay runs from the failure. The delay is forgotten
on a new app version or ``DELETE /v2/queue/{id}/delay`` (:meth:`LaunchDelays.reset`), and after a quiet period
of the current delay plus ``maxLaunchDelaySeconds`` with no failure (Marathon drops such overdue delays).
Which statuses count as failures (TASK_FAILED, TASK_FINISHED, health kills; not TASK_KILLED) is the caller's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from butte.wire.marathon import App


@final
@dataclass(frozen=True, slots=True)
class Delay:
    """One app's current launch delay and the failure it runs from; ``quiet_s`` is when it is forgotten."""

    delay_s: float
    failed_at: float
    quiet_s: float

    def left_s(self, now: float) -> float:
        """Seconds of the delay still to run at ``now``."""
        return max(0.0, self.failed_at + self.delay_s - now)

    def expired(self, now: float) -> bool:
        """Whether the quiet period after the delay has passed with no new failure."""
        return now >= self.failed_at + self.delay_s + self.quiet_s


@final
class LaunchDelays:
    """Launch delays of every app by id (a small mutable book; the owner passes ``now`` in)."""

    def __init__(self) -> None:
        self._delays: dict[str, Delay] = {}

    def on_failure(self, app_id: str, app: App, now: float) -> None:
        """A task of ``app`` failed at ``now``: start or lengthen its delay."""
        cap_s = max(app.max_launch_delay_seconds, 0.0)
        current = self._current(app_id, now)
        delay_s = app.backoff_seconds if current is None else current.delay_s * app.backoff_factor
        self._delays[app_id] = Delay(delay_s=min(delay_s, cap_s), failed_at=now, quiet_s=cap_s)

    def reset(self, app_id: str) -> None:
        """Forget the app's delay (a new version, or the API's reset)."""
        self._delays.pop(app_id, None)

    def delay_left_s(self, app_id: str, now: float) -> float:
        """Seconds until the app may launch again; 0 when it may launch now."""
        current = self._current(app_id, now)
        return 0.0 if current is None else current.left_s(now)

    def may_launch(self, app_id: str, now: float) -> bool:
        """Whether the app's delay has run out."""
        return self.delay_left_s(app_id, now) <= 0.0

    def current(self, app_id: str, now: float) -> Delay | None:
        """The app's delay in force at ``now``, if any (for ``/v2/queue`` and snapshots)."""
        return self._current(app_id, now)

    def _current(self, app_id: str, now: float) -> Delay | None:
        found = self._delays.get(app_id)
        if found is not None and found.expired(now):
            # Marathon drops an overdue delay after a quiet period; the next failure starts over.
            del self._delays[app_id]
            return None
        return found
