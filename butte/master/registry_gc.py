"""Registry GC: which unreachable and gone agents the registry may forget (pure).

Mesos (``Master::doRegistryGc``): every ``--registry_gc_interval`` (15mins) the leading master prunes its
registry's unreachable list and its gone list, each on its own. It walks a list from the agent marked first
and drops an entry while more than ``--registry_max_agent_count`` (102400) would be left, or when the agent
was marked longer ago than ``--registry_max_agent_age`` (2weeks; strictly longer). The registry write comes
first; an agent that reregistered since the selection is no longer on the list and is kept
(``RegistryGcRace``). The master then forgets the agent and its unreachable tasks: reconciliation answers
TASK_UNKNOWN for them, and if the agent ever returns it is admitted afresh with what it reports (since Mesos
1.5 the registry no longer refuses unknown agents, and no task is killed for having been declared lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The registry states GC applies to, each a list of its own (Mesos's `slaves.unreachable`, `slaves.gone`).
PRUNABLE_STATES = ("unreachable", "gone")

# Mesos's defaults (src/master/flags.cpp).
DEFAULT_GC_INTERVAL_S = 15 * 60.0
DEFAULT_MAX_AGENT_AGE_S = 14 * 24 * 3600.0
DEFAULT_MAX_AGENT_COUNT = 100 * 1024


@dataclass(frozen=True, slots=True)
class AgentMark:
    """An agent's registry state and when it was moved there (None: written before marks carried a time)."""

    state: str
    marked_at: float | None = None


def select_prunable(
    marks: Mapping[str, AgentMark], now: float, max_age_s: float, max_count: int, *, unknown_time: float
) -> list[str]:
    """The ids of the unreachable and gone agents the registry should forget, sorted.

    ``unknown_time`` stands in for a mark with no time (the election time: such an agent ages from then).
    Admitted agents are never chosen.
    """
    chosen: list[str] = []
    for state in PRUNABLE_STATES:
        listed = sorted(
            (unknown_time if mark.marked_at is None else mark.marked_at, agent_id)
            for agent_id, mark in marks.items()
            if mark.state == state
        )
        chosen += _prune_list(listed, now, max_age_s, max_count)
    return sorted(chosen)


def _prune_list(listed: list[tuple[float, str]], now: float, max_age_s: float, max_count: int) -> list[str]:
    # `listed` is oldest first (ties by id, so a replay chooses the same agents).
    excess = max(0, len(listed) - max(0, max_count))
    return [
        agent_id for index, (marked_at, agent_id) in enumerate(listed) if index < excess or now - marked_at > max_age_s
    ]
