"""Who leads: the contender port and what a master does when it gains or loses leadership.

A contender reports :class:`LeaderView` changes on the asyncio loop. ``standalone.py`` always leads (one master,
no ZooKeeper); ``zookeeper.py`` runs Mesos's election (lowest ``json.info_`` sequence leads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaderView:
    """What a contender knows: whether this master leads, its epoch, and the leader's MasterInfo JSON."""

    leading: bool
    epoch: int | None = None
    leader_info: Json | None = None


ViewListener = Callable[[LeaderView], None]


class Contender(Protocol):
    """Takes part in the election; calls the listener (on the loop) whenever the view changes."""

    async def start(self, listener: ViewListener) -> None: ...

    async def stop(self) -> None: ...
