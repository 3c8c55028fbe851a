"""Leader election in a real ZooKeeper ensemble: Mesos's znode layout, redirects from standbys, the registry.

One ensemble and three masters (module-scoped: starting them is most of the cost) serve every test here.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kazoo.client import KazooClient

from butte.master.registry.zookeeper import ZkRegistry
from butte.scheduler.zk_detector import ZkDetector, sequence_of
from butte.testing.process import ButteProcess
from butte.testing.wait import until
from butte.testing.zookeeper import HaCluster, unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "zk-test"}}}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ha(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HaCluster]:
    flags = {"agent_reregister_timeout": "1secs"}
    async with HaCluster(tmp_path_factory.mktemp("ha"), masters=3, agents=1, master_flags=flags) as cluster:
        yield cluster


@pytest_asyncio.fixture(loop_scope="module")
async def zk(ha: HaCluster) -> AsyncIterator[KazooClient]:
    client = KazooClient(hosts=ha.ensemble.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


async def standbys(ha: HaCluster) -> tuple[ButteProcess, list[ButteProcess]]:
    leader = await ha.wait_for_leader()
    return leader, [m for m in ha.masters if m is not leader]


@pytest.mark.asyncio(loop_scope="module")
async def test_only_json_info_members_and_the_lowest_sequence_leads(ha: HaCluster, zk: KazooClient) -> None:
    leader, _ = await standbys(ha)
    children = zk.get_children("/butte")
    assert len(children) == 3 and all(sequence_of(c) is not None for c in children), children
    # pymesos takes min() of the names as strings; with a fixed-width sequence that is the lowest sequence.
    lowest = min(children)
    info = json.loads(zk.get(f"/butte/{lowest}")[0])
    assert info["address"] == {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": leader.port}
    assert info["pid"] == f"master@127.0.0.1:{leader.port}"
    assert not zk.exists("/butte/registry")  # the registry lives beside the group, never in it


@pytest.mark.asyncio(loop_scope="module")
async def test_standbys_redirect_the_apis_and_name_the_leader(ha: HaCluster) -> None:
    leader, others = await standbys(ha)
    async with aiohttp.ClientSession() as session:
        for standby in others:
            for path in ("/api/v1/scheduler", "/master/api/v1/scheduler", "/api/v1"):
                async with session.post(f"{standby.url}{path}?x=1", json=SUBSCRIBE, allow_redirects=False) as r:
                    assert r.status == 307
                    assert r.headers["Location"] == f"//127.0.0.1:{leader.port}{path}?x=1"
            async with session.get(f"{standby.url}/master/redirect", allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (307, f"//127.0.0.1:{leader.port}")
            state = await ha.state_of(standby)
            assert state["leader"] == f"master@127.0.0.1:{leader.port}"
            assert state["leader_info"]["port"] == leader.port
            assert state["slaves"] == []  # a standby keeps no cluster state
            async with session.get(f"{standby.url}/metrics/snapshot") as r:
                assert (await r.json())["master/elected"] == 0.0


@pytest.mark.asyncio(loop_scope="module")
async def test_the_detector_finds_the_leader(ha: HaCluster) -> None:
    leader, _ = await standbys(ha)
    detector = ZkDetector(ha.zk_url)
    try:
        assert await detector.leader() == f"127.0.0.1:{leader.port}"
    finally:
        await detector.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_registry_is_replicated_in_zookeeper(ha: HaCluster, zk: KazooClient) -> None:
    state = await ha.wait_for_agents()
    agent_id = state["slaves"][0]["id"]
    registry = ZkRegistry(zk, "/butte")
    assert registry.path == "/butte-registry"
    assert registry.state_of(agent_id) == "admitted"  # the leader wrote it before admitting the agent
    registry.admit("test-agent", b'{"hostname":"h","port":1}')
    registry.mark("test-agent", "gone")
    assert registry.agents()["test-agent"] == ("gone", {"hostname": "h", "port": 1})
    registry.remove("test-agent")
    assert registry.state_of("test-agent") is None
    registry.save_weights({"b": 2.0, "a": 0.5})
    assert ZkRegistry(zk, "/butte").weights() == {"a": 0.5, "b": 2.0}


@pytest.mark.asyncio(loop_scope="module")
async def test_failover_pymesos_follows_and_a_missing_agent_is_marked_unreachable(
    ha: HaCluster, zk: KazooClient
) -> None:
    # Last in the module: it kills the leader and the agent.
    pymesos = pytest.importorskip("pymesos", reason="pymesos is not installed: run scripts/install-compat-deps")
    calls: list[str] = []

    class Scheduler(pymesos.Scheduler):  # type: ignore[misc,name-defined]
        def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
            calls.append("registered")

        def reregistered(self, driver: Any, master_info: Any) -> None:
            calls.append("reregistered")

    framework = {"user": "root", "name": "pymesos-zk", "failover_timeout": 100}
    driver = pymesos.MesosSchedulerDriver(Scheduler(), framework, ha.zk_url, use_addict=False)
    driver.start()
    pymesos_zk = driver.detector.zk  # pymesos stops its kazoo client but never closes it; we do
    try:
        await until(lambda: calls == ["registered"], timeout=15, what="pymesos to subscribe through ZooKeeper")
        old = await ha.wait_for_leader()
        agent_id = (await ha.state_of(old))["slaves"][0]["id"]
        ha.agents[0].send_signal(signal.SIGKILL)
        await ha.kill_master(old)
        new = await ha.wait_for_leader(other_than=old, timeout_s=15)
        await until(lambda: "reregistered" in calls, timeout=15, what="pymesos to resubscribe to the new leader")
        frameworks = (await ha.state_of(new))["frameworks"]
        assert [f["name"] for f in frameworks] == ["pymesos-zk"]
        registry = ZkRegistry(zk, "/butte")
        await until(lambda: registry.state_of(agent_id) == "unreachable", timeout=10, what="agent marked unreachable")

        # Losing one ZooKeeper node of three keeps a quorum: whoever was connected to it reconnects elsewhere.
        ha.ensemble.kill_node(0)
        await ha.wait_for_leader(timeout_s=15)
        assert registry.state_of(agent_id) == "unreachable"
    finally:
        driver.stop()
        driver.join()
        pymesos_zk.close()
