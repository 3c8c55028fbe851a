"""The registry and contender a master runs with: SQLite and standalone, or both in ZooKeeper (``--zk``)."""

from __future__ import annotations

from pathlib import Path

from butte.master.leadership import Contender
from butte.master.leadership.standalone import StandaloneContender
from butte.master.registry import Registry
from butte.master.registry.sqlite import SqliteRegistry


async def open_backends(
    *, zk: str | None, work_dir: str | None, master_info_json: bytes, session_timeout_s: float
) -> tuple[Registry, Contender]:
    """The registry and the contender for these flags; ZooKeeper's share one session.

    Raises:
        CoordinatorUnavailable: ``zk`` is set and ZooKeeper did not answer within the session timeout.
        ValidationError: ``zk`` is not a ZooKeeper URL.
    """
    if not zk:
        assert work_dir is not None, "a standalone master needs --work_dir"
        return SqliteRegistry(Path(work_dir) / "registry.db"), StandaloneContender()
    from butte.master.leadership.zookeeper import ZkContender  # kazoo only for masters that use ZooKeeper
    from butte.master.registry.zookeeper import ZkRegistry

    contender = ZkContender(zk, master_info_json, session_timeout_s)
    client = await contender.connect()
    # Registry writes are fenced by the znode this master leads with: a deposed leader cannot land one.
    return ZkRegistry(client, contender.url.path, fence=contender), contender
