"""Finding the leading master: the ``MasterDetector`` port and its static (``host:port``) implementation.

The ZooKeeper detector (``zk://host1:2181,host2:2181/butte``, the lowest ``json.info_`` znode as in
``reference/mesos-v1-api.md`` §5) is in ``zk_detector.py``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, final

from butte.core.errors import ValidationError

DEFAULT_MASTER_PORT = 5050


class MasterDetector(Protocol):
    """Where the leading master is, and when that changes."""

    async def leader(self) -> str:
        """The leader's ``host:port``; waits while no leader is known."""
        ...

    async def next_leader(self, previous: str | None) -> str:
        """Wait until the leader is known and differs from ``previous``; return its ``host:port``."""
        ...

    async def close(self) -> None:
        """Release what the detector holds (a ZooKeeper session)."""
        ...


@final
class StaticDetector:
    """One fixed master address: the leader never changes (the master itself redirects if it must)."""

    def __init__(self, address: str) -> None:
        self.address = normalize_address(address)

    async def leader(self) -> str:
        """The configured address."""
        return self.address

    async def next_leader(self, previous: str | None) -> str:
        """The configured address if ``previous`` differs from it, otherwise wait forever."""
        if previous != self.address:
            return self.address
        await asyncio.Event().wait()
        raise AssertionError("unreachable: a static leader never changes")

    async def close(self) -> None:
        """Nothing to release."""


def normalize_address(text: str) -> str:
    """``host:port`` from ``host:port``, ``host`` (port 5050) or ``http://host:port/``.

    Raises:
        ValidationError: the text is empty or the port is not a number from 1 to 65535.
    """
    address = text.strip().removeprefix("http://").rstrip("/")
    if not address:
        raise ValidationError("master", "empty master address")
    _, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        # No port (a bare ``[::1]`` ends in "]"): Mesos clients append the default master port.
        return f"{address}:{DEFAULT_MASTER_PORT}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError("master", f"bad port in master address {text!r}")
    return address


def detector_for(master: str) -> MasterDetector:
    """The detector for a ``--master`` value.

    Raises:
        ValidationError: the address or the ``zk://`` URL is malformed.
    """
    if master.startswith(("zk://", "zoo://", "file://")):
        from butte.scheduler.zk_detector import ZkDetector  # kazoo is loaded only by those who use ZooKeeper

        return ZkDetector(master)
    return StaticDetector(master)
