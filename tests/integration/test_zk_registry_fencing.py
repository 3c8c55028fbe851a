"""Registry writes fenced by leadership, in a real ZooKeeper: a deposed leader's write is refused whole.

Each write of a fenced :class:`ZkRegistry` is one transaction that first checks the election znode the master
leads with. Losing that znode — deleted here, or its session expired — must make every write fail with
:class:`NotLeader`, store nothing, and make the master step down; a leader's writes still land.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from butte.master import agents
from butte.master.leadership import LeaderView
from butte.master.leadership.role import MasterRole
from butte.master.leadership.zookeeper import ZkContender
from butte.master.registry import NotLeader
from butte.master.registry.sqlite import SqliteRegistry
from butte.master.registry.zookeeper import ZkRegistry
from butte.master.service import MasterService
from butte.master.state import MasterConfig, MasterState
from butte.testing.wait import until
from butte.testing.zookeeper import ZooKeeperEnsemble, one_server_ensemble, unavailable_reason
from butte.wire.mesos import AgentInfo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

AGENT_INFO = b'{"hostname":"a1.example","port":5051}'
_paths = itertools.count()


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    with one_server_ensemble(tmp_path_factory.mktemp("zk")) as zookeeper:
        yield zookeeper


@pytest.fixture
def url(ensemble: ZooKeeperEnsemble) -> str:
    """A fresh election path per test, so tests never see each other's masters or registry."""
    return ensemble.url(f"/fencing-{next(_paths)}")


@pytest.fixture
def zk(ensemble: ZooKeeperEnsemble) -> Iterator[KazooClient]:
    """A client of our own: it deletes znodes and reads the registry as ZooKeeper holds it."""
    client = KazooClient(hosts=ensemble.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


def master_info(name: str) -> bytes:
    return json.dumps({"id": name, "hostname": f"{name}.example", "port": 5050}).encode()


@asynccontextmanager
async def contender(url: str, name: str) -> AsyncIterator[tuple[ZkContender, list[LeaderView]]]:
    """A started contender and the views it reported, in order."""
    joined = ZkContender(url, master_info(name), session_timeout_s=4.0)
    views: list[LeaderView] = []
    await joined.start(views.append)
    try:
        yield joined, views
    finally:
        await joined.stop()


def leads(views: list[LeaderView]) -> bool:
    return bool(views) and views[-1].leading


def reader(zk: KazooClient, election: ZkContender) -> ZkRegistry:
    """The registry read from outside (unfenced): what any next leader would find."""
    return ZkRegistry(zk, election.url.path)


class PinnedFence:
    """A fence that always names one znode, so the transaction's check is what refuses (never the fence)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.lost: list[str] = []

    def leading_node(self) -> str | None:
        return self.node

    def fence_lost(self, node_path: str) -> None:
        self.lost.append(node_path)


async def test_a_leaders_fenced_writes_land(url: str, zk: KazooClient) -> None:
    async with contender(url, "a") as (a, views):
        await until(lambda: leads(views), what="a to lead")
        assert a.leading_node() == a.node_path is not None
        registry = ZkRegistry(a.client, a.url.path, fence=a)
        registry.admit("agent-1", AGENT_INFO)
        registry.admit("agent-2", AGENT_INFO)
        registry.mark("agent-1", "unreachable")
        registry.remove("agent-2")
        registry.remove("agent-never-known")  # forgetting an unknown agent is not an error
        registry.save_weights({"b": 2.0, "a": 0.5})

        outside = reader(zk, a)
        assert outside.agents() == {"agent-1": ("unreachable", json.loads(AGENT_INFO))}
        assert outside.weights() == {"a": 0.5, "b": 2.0}


async def test_the_check_rides_in_the_transaction_and_refuses_every_write(
    ensemble: ZooKeeperEnsemble, url: str, zk: KazooClient
) -> None:
    holder = KazooClient(hosts=ensemble.hosts)
    holder.start(timeout=10)
    election = url.split("/", 3)[3]
    node = holder.create(f"/{election}/json.info_", master_info("a"), ephemeral=True, sequence=True, makepath=True)
    fence = PinnedFence(node)
    registry = ZkRegistry(zk, f"/{election}", fence=fence)
    registry.admit("agent-1", AGENT_INFO)
    registry.save_weights({"a": 1.0})
    assert fence.lost == []

    holder.stop()  # the session ends, and its ephemeral znode with it: as when a paused leader's session expires
    holder.close()
    writes: list[Callable[[], None]] = [
        lambda: registry.admit("agent-2", AGENT_INFO),
        lambda: registry.mark("agent-1", "unreachable"),
        lambda: registry.remove("agent-1"),
        lambda: registry.save_weights({"a": 9.0}),
    ]
    for write in writes:
        with pytest.raises(NotLeader):
            write()
    assert fence.lost == [node] * len(writes)  # the contender is told each time, so the master steps down
    outside = ZkRegistry(zk, f"/{election}")
    assert outside.agents() == {"agent-1": ("admitted", json.loads(AGENT_INFO))}
    assert outside.weights() == {"a": 1.0}


async def test_a_znode_that_is_not_as_created_does_not_fence(url: str, zk: KazooClient) -> None:
    election = url.split("/", 3)[3]
    node = zk.create(f"/{election}/json.info_", master_info("a"), ephemeral=True, sequence=True, makepath=True)
    zk.set(node, master_info("someone else"))  # version 1: not the znode the contender created
    registry = ZkRegistry(zk, f"/{election}", fence=PinnedFence(node))
    with pytest.raises(NotLeader):
        registry.admit("agent-1", AGENT_INFO)
    assert ZkRegistry(zk, f"/{election}").state_of("agent-1") is None


async def test_a_leader_whose_znode_is_deleted_writes_nothing_even_after_rejoining(url: str, zk: KazooClient) -> None:
    async with contender(url, "a") as (a, a_views), contender(url, "b") as (b, b_views):
        await until(lambda: leads(a_views) and b_views and not leads(b_views), what="a to lead, b to follow")
        registry = ZkRegistry(a.client, a.url.path, fence=a)
        registry.admit("agent-1", AGENT_INFO)
        old = a.node_path
        assert old is not None

        zk.delete(old)  # what the ensemble does when a's session expires
        with pytest.raises(NotLeader):
            registry.mark("agent-1", "unreachable")
        await until(lambda: leads(b_views) and a.node_path != old, what="b to lead and a to rejoin")
        assert not leads(a_views)
        with pytest.raises(NotLeader):  # a's new znode is a follower's: it must not pass the fence
            registry.admit("agent-2", AGENT_INFO)

        outside = reader(zk, a)
        assert outside.agents() == {"agent-1": ("admitted", json.loads(AGENT_INFO))}
        ZkRegistry(b.client, b.url.path, fence=b).mark("agent-1", "unreachable")  # the new leader writes
        assert outside.state_of("agent-1") == "unreachable"


async def test_a_leader_whose_session_expires_writes_nothing(
    ensemble: ZooKeeperEnsemble, url: str, zk: KazooClient
) -> None:
    async with contender(url, "a") as (a, a_views), contender(url, "b") as (_, b_views):
        await until(lambda: leads(a_views) and b_views and not leads(b_views), what="a to lead, b to follow")
        registry = ZkRegistry(a.client, a.url.path, fence=a)
        old = a.node_path

        # Another client that takes over a's session and closes it: the ensemble expires it for a.
        thief = KazooClient(hosts=ensemble.hosts, client_id=a.client.client_id)
        thief.start(timeout=10)
        thief.stop()
        thief.close()
        await until(lambda: leads(b_views) and a.node_path not in (None, old), what="b to lead and a to rejoin")
        with pytest.raises(NotLeader):
            registry.admit("agent-1", AGENT_INFO)
        assert reader(zk, a).state_of("agent-1") is None


def fresh_state() -> MasterState:
    config = MasterConfig(master_id="m1", ip="127.0.0.1", port=5050, hostname="m1.example")
    return MasterState(config, random.Random(0), start_time=0.0)


@asynccontextmanager
async def master(url: str) -> AsyncIterator[tuple[MasterRole, ZkContender]]:
    """A master's role and service over a fenced ZooKeeper registry, as ``open_backends`` wires them."""
    election = ZkContender(url, master_info("m1"), session_timeout_s=4.0)
    client = await election.connect()
    service = MasterService(fresh_state(), ZkRegistry(client, election.url.path, fence=election))
    role = MasterRole(service, fresh_state, configured_weights={})
    await election.start(role.on_view)
    try:
        yield role, election
    finally:
        await election.stop()
        await role.close()
        await service.stop()


async def test_a_refused_write_makes_the_master_step_down(url: str, zk: KazooClient) -> None:
    async with master(url) as (role, election), contender(url, "b") as (_, b_views):
        service = role.service
        await until(lambda: service.leading and b_views, what="the master to lead")
        node = election.node_path
        assert node is not None
        zk.delete(node)
        with pytest.raises(NotLeader):
            service.registry.admit("agent-1", AGENT_INFO)
        await until(lambda: leads(b_views), what="b to lead")
        assert not service.leading and service.framework_streams == {} and service.agent_streams == {}


async def test_a_master_that_leads_again_under_a_new_znode_starts_a_new_term(url: str, zk: KazooClient) -> None:
    async with master(url) as (role, election):
        service = role.service
        await until(lambda: service.leading, what="the master to lead")
        first_epoch, node = service.epoch, election.node_path
        assert node is not None
        zk.delete(node)  # alone in the election, it rejoins and leads again with a higher sequence
        await until(lambda: service.leading and service.epoch != first_epoch, what="a new term")
        assert role.elections == 2
        service.registry.admit("agent-1", AGENT_INFO)  # fenced by the new znode
        assert reader(zk, election).state_of("agent-1") == "admitted"


async def test_a_lost_fence_stops_the_lead_at_once_then_the_contender_looks_again(url: str) -> None:
    async with contender(url, "a") as (a, views):
        await until(lambda: leads(views), what="a to lead")
        node, seen = a.node_path, len(views)
        assert node is not None
        a.fence_lost("/some/other/znode")  # not the znode we lead with: nothing happens
        assert a.leading_node() == node

        a.fence_lost(node)  # as the registry does when the check fails, before any watch fires
        await until(lambda: any(not view.leading for view in views[seen:]), what="a not-leading view")
        # Its znode is in fact still there (the check failed for some other reason): it leads again under it.
        await until(lambda: a.leading_node() == node and leads(views), what="a to lead again")


async def test_a_leading_view_with_a_new_epoch_is_a_new_term(tmp_path: Path) -> None:
    # The contender may report "leading, epoch 2" right after "leading, epoch 1" with nothing between (its znode
    # vanished and the new one leads): the role must not carry the old term's state and timers on under it.
    registry = SqliteRegistry(tmp_path / "registry.db")
    service = MasterService(fresh_state(), registry)
    role = MasterRole(service, fresh_state, configured_weights={})
    try:
        role.on_view(LeaderView(leading=True, epoch=1))
        first_state = service.state
        role.on_view(LeaderView(leading=True, epoch=1))  # a repeat changes nothing
        assert (role.elections, service.state) == (1, first_state)
        role.on_view(LeaderView(leading=True, epoch=2))
        assert (role.elections, service.epoch, service.leading) == (2, 2, True)
        assert service.state is not first_state
    finally:
        await role.close()
        await service.stop()
        registry.close()


async def test_a_deposed_master_does_not_mark_a_silent_agent_unreachable(url: str, zk: KazooClient) -> None:
    # The checklist's split brain: a resumed old leader sees an agent silent (it now talks to the new leader) and
    # would tell non-partition-aware frameworks TASK_LOST, so that the agent's comeback kills live tasks.
    election = url.split("/", 3)[3]
    node = zk.create(f"/{election}/json.info_", master_info("a"), ephemeral=True, sequence=True, makepath=True)
    fence = PinnedFence(node)
    registry = ZkRegistry(zk, f"/{election}", fence=fence)
    registry.admit("agent-1", AGENT_INFO)
    now = [1_000.0]
    service = MasterService(fresh_state(), registry, clock=lambda: now[0])
    agents.admit(service.state, "agent-1", AgentInfo(hostname="a1.example"), "10.0.0.5", "s1", now[0])
    zk.delete(node)  # deposed while paused

    now[0] += 3_600.0  # an hour of missed pings
    service._tick()  # the timer's pass, run by hand: no sleeping on the real timer
    assert fence.lost == [node]
    assert service.state.agents["agent-1"].registered  # not acted on
    assert ZkRegistry(zk, f"/{election}").state_of("agent-1") == "admitted"
