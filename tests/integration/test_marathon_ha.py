"""Two ``butte marathon`` instances on one ZooKeeper path: one leads, the other proxies, and takes over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonKit
from butte.testing.wait import until
from butte.testing.zookeeper import ZooKeeperEnsemble, unavailable_reason

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[MarathonKit, MarathonKit]]:
    async with ZooKeeperEnsemble(tmp_path / "zk", size=1) as zk, Cluster(agents=1, work_dir=tmp_path / "c") as cluster:
        flags: dict[str, object] = {"zk": zk.url("/marathon"), "zk_session_timeout": "2secs"}
        first = await MarathonKit(cluster, flags=flags, name="marathon-1").start()
        second = await MarathonKit(cluster, flags=flags, name="marathon-2").start()
        try:
            yield first, second
        finally:
            await second.stop()
            await first.stop()


async def test_the_standby_names_the_leader_and_proxies_to_it(pair: tuple[MarathonKit, MarathonKit]) -> None:
    leader, standby = pair
    assert (await standby.request("GET", "/v2/leader"))["leader"] == f"127.0.0.1:{leader.port}"
    assert (await leader.request("GET", "/v2/leader"))["leader"] == f"127.0.0.1:{leader.port}"

    status, _ = await standby.call("POST", "/v2/apps", {"id": "/svc", "cmd": "sleep 300", "cpus": 0.1, "mem": 16})
    assert status == 201
    await leader.wait_running("/svc", 1)
    info = await standby.request("GET", "/v2/info")
    assert info["leader"] == f"127.0.0.1:{leader.port}" and info["elected"] is True


async def test_the_standby_takes_over_and_keeps_the_tasks(pair: tuple[MarathonKit, MarathonKit]) -> None:
    leader, standby = pair
    await leader.request("POST", "/v2/apps", {"id": "/svc", "cmd": "sleep 300", "cpus": 0.1, "mem": 16})
    await leader.wait_running("/svc", 1)
    before = {task["id"] for task in (await leader.app("/svc"))["tasks"]}
    framework_id = (await leader.request("GET", "/v2/info"))["frameworkId"]

    await leader.kill()

    async def standby_leads() -> bool:
        return bool((await standby.request("GET", "/v2/leader"))["leader"] == f"127.0.0.1:{standby.port}")

    await until(standby_leads, timeout=20, what="the standby to lead", ignore=(Exception,))
    await standby.wait_running("/svc", 1)
    assert {task["id"] for task in (await standby.app("/svc"))["tasks"]} == before
    assert (await standby.request("GET", "/v2/info"))["frameworkId"] == framework_id
