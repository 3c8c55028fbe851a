"""The master's durable registry: the port both backends (``sqlite.py``, ``zookeeper.py``) implement."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from butte.core.errors import Unavailable
from butte.master.registry_gc import AgentMark


class NotLeader(Unavailable):
    """A registry write was refused because this master no longer leads (its election znode is gone).

    Nothing of the write was stored; the caller must not act on it (the master steps down).
    """


class Registry(Protocol):
    """Admitted / unreachable / gone agents and weights, written before the master acts on them."""

    def admit(self, agent_id: str, info: bytes) -> None: ...

    def mark(self, agent_id: str, state: str) -> None: ...

    def remove(self, agent_id: str) -> None: ...

    def agents(self) -> dict[str, tuple[str, dict[str, object]]]: ...

    def state_of(self, agent_id: str) -> str | None: ...

    # Registry GC (butte.master.registry_gc): a mark records when it was made; prune drops only agents still
    # marked unreachable or gone, so one that reregistered after the selection stays.
    def marked_agents(self) -> dict[str, AgentMark]: ...

    def prune(self, agent_ids: Collection[str]) -> list[str]: ...

    def save_weights(self, weights: dict[str, float]) -> None: ...

    def weights(self) -> dict[str, float]: ...

    def close(self) -> None: ...
