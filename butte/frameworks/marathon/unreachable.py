"""How long an unreachable instance is waited for (Marathon 1.4+, ``docs/docs/unreachable.md``).

Pure: the instance's ``unreachable_since`` and the app's ``unreachableStrategy`` in, a condition out. After
``inactiveAfterSeconds`` an unreachable instance becomes ``UnreachableInactive`` and gets a replacement; after
``expungeAfterSeconds`` it is expunged (killed if it ever comes back). With ``"disabled"`` (resident apps)
Marathon waits forever. A limit counts as reached at the very second, so 0/0 acts at once, as in Marathon 1.6.
"""

from __future__ import annotations

from typing import Literal

from butte.frameworks.marathon.model import Instance
from butte.wire.marathon import App

UnreachableCondition = Literal["Reachable", "Unreachable", "UnreachableInactive", "Expunge"]


def unreachable_condition(instance: Instance, app: App, now: float) -> UnreachableCondition:
    """Where ``instance`` stands at ``now``: reachable, unreachable, inactive (replace it) or to expunge."""
    if instance.unreachable_since is None:
        return "Reachable"
    strategy = app.unreachable_strategy
    if strategy == "disabled":
        return "Unreachable"
    away_s = now - instance.unreachable_since
    if away_s >= strategy.expunge_after_seconds:
        return "Expunge"
    if away_s >= strategy.inactive_after_seconds:
        return "UnreachableInactive"
    return "Unreachable"
