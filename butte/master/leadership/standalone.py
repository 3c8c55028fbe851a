"""A single master with no ZooKeeper: it leads from the start, with epoch 0, and never steps down."""

from __future__ import annotations

from typing import final

from butte.master.leadership import LeaderView, ViewListener


@final
class StandaloneContender:
    """Always the leader."""

    async def start(self, listener: ViewListener) -> None:
        """Report leadership at once."""
        listener(LeaderView(leading=True, epoch=0))

    async def stop(self) -> None:
        """Nothing to release."""
