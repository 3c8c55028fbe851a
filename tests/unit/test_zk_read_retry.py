"""A failed read of the election group is read again: nothing else may come to ask (the group stays put)."""

from __future__ import annotations

import asyncio
import json

from kazoo.exceptions import ConnectionLoss

from butte.master.leadership import LeaderView
from butte.master.leadership.zookeeper import ZkContender
from butte.scheduler.zk_detector import ZkDetector
from butte.testing.wait import until

LEADER = {"id": "m1", "pid": "master@127.0.0.1:5050"}


class FlakyGroup:
    """Just enough of a kazoo client: the election group holds the leader's znode; the first read fails."""

    connected = True

    def __init__(self) -> None:
        self.failures = 1
        self.children = ["json.info_0000000001"]

    def get_children(self, path: str) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionLoss()
        return list(self.children)

    def create(self, path: str, value: bytes, **options: object) -> str:
        self.children.append("json.info_0000000002")
        return f"{path}0000000002"

    def get(self, path: str) -> tuple[bytes, object]:
        return json.dumps(LEADER).encode(), None


async def test_a_failed_read_of_the_group_is_retried_until_the_leader_is_known() -> None:
    views: list[LeaderView] = []
    contender = ZkContender("zk://127.0.0.1:2181/mesos", b"{}", 10.0)
    contender._client = FlakyGroup()  # type: ignore[assignment]
    contender._loop = asyncio.get_running_loop()
    contender._listener = views.append
    contender._evaluate()
    view = await until(lambda: views[-1] if views else None, timeout=5, what="a view after the retry")
    assert not view.leading and view.leader_info == LEADER and view.epoch == 1


async def test_a_detector_reads_the_leader_again_after_a_failed_read() -> None:
    detector = ZkDetector("zk://127.0.0.1:2181/mesos")
    detector._client = FlakyGroup()  # type: ignore[assignment]
    detector._loop = asyncio.get_running_loop()
    detector._on_children(["json.info_0000000001"])
    await until(lambda: detector.info == LEADER, timeout=5, what="the leader after the retry")
