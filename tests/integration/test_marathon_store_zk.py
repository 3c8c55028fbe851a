"""Marathon's store in a real ZooKeeper: the znode layout, round trips across sessions, version caps, bursts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from kazoo.client import KazooClient

from butte.core.errors import CoordinatorUnavailable
from butte.frameworks.marathon.model import (
    Action,
    DeploymentPlan,
    GroupMeta,
    HealthResult,
    Instance,
    RootGroup,
    Step,
    iso_timestamp,
)
from butte.frameworks.marathon.store import MAX_VERSIONS, open_store
from butte.frameworks.marathon.store_zk import ZkStore
from butte.testing.ports import free_port
from butte.testing.zookeeper import ZooKeeperEnsemble, one_server_ensemble, unavailable_reason
from butte.wire.marathon import App, CommandCheck, Container, Docker, HealthCheck, VersionInfo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

T0 = 1_700_000_000.0


def version(i: int) -> str:
    return iso_timestamp(T0 + i)


def app_at(at: int, app_id: str = "/prod/web") -> App:
    return App(
        id=app_id,
        cmd="sleep 1000",
        container=Container(docker=Docker(image="busybox")),
        health_checks=[HealthCheck(protocol="COMMAND", command=CommandCheck(value="true"))],
        unreachable_strategy="disabled",
        version=version(at),
        version_info=VersionInfo(last_scaling_at=version(at), last_config_change_at=version(at)),
    )


def root_at(at: int, *apps: App) -> RootGroup:
    groups = {"/": GroupMeta(version=version(at)), "/prod": GroupMeta(version=version(at), dependencies=("/db",))}
    return RootGroup(apps={app.id: app for app in apps}, groups=groups, version=version(at))


def instance(task_id: str, state: str = "TASK_RUNNING") -> Instance:
    return Instance(
        task_id=task_id,
        app_id="/prod/web",
        version=version(0),
        config_version=version(0),
        agent_id="agent-1",
        host="10.0.0.1",
        staged_at=T0,
        ports=(31000,),
        state=state,
        health=HealthResult(alive=True, last_success=T0 + 1),
    )


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    with one_server_ensemble(tmp_path_factory.mktemp("zk")) as zookeeper:
        yield zookeeper


_paths = iter(range(1_000_000))


@pytest_asyncio.fixture
async def url(ensemble: ZooKeeperEnsemble) -> str:
    """A fresh chroot-like path per test, so tests never see each other's state."""
    return ensemble.url(f"/marathon-{next(_paths)}")


@pytest_asyncio.fixture
async def store(url: str) -> AsyncIterator[ZkStore]:
    opened = await ZkStore.open(url, session_timeout_s=5.0)
    yield opened
    await opened.close()


@pytest.fixture
def zk(ensemble: ZooKeeperEnsemble) -> Iterator[KazooClient]:
    client = KazooClient(hosts=ensemble.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


async def test_everything_survives_a_new_session_under_the_urls_path(url: str, zk: KazooClient) -> None:
    root = root_at(1, app_at(1))
    plan = DeploymentPlan(
        id="d-1",
        version=version(1),
        original=RootGroup(),
        target=root,
        steps=(Step((Action("StartApplication", "/prod/web"),)),),
    )
    store = await open_store_zk(url)
    await store.save_framework_id("fw-0001")
    await store.save_root(root)
    await store.save_deployment(plan, 0)
    await store.save_instances([instance("web.1"), instance("web.2", "TASK_STAGING")])
    await store.close()

    path = url.rsplit("/", 1)[1]
    layout = {"apps", "deployments", "framework_id", "instances", "root", "root-versions"}
    assert set(zk.get_children(f"/{path}/state")) == layout
    assert zk.get_children(f"/{path}/state/apps") == ["%2Fprod%2Fweb"]

    reopened = await open_store_zk(url)
    state = await reopened.load()
    assert state.framework_id == "fw-0001"
    assert state.root == root and state.root.apps["/prod/web"].unreachable_strategy == "disabled"
    assert state.deployments == ((plan, 0),)
    assert state.instances == (instance("web.1"), instance("web.2", "TASK_STAGING"))
    assert await reopened.app_version("/prod/web", version(1)) == app_at(1)
    assert await reopened.root_version(version(1)) == root
    await reopened.close()


async def open_store_zk(url: str) -> ZkStore:
    store = await open_store(Path("unused-with-zk"), url, session_timeout_s=5.0)
    assert isinstance(store, ZkStore)
    return store


async def test_versions_are_capped_at_fifty_and_listed_newest_first(store: ZkStore) -> None:
    other = app_at(0, "/other")
    for i in range(MAX_VERSIONS + 3):
        await store.save_root(root_at(i, app_at(i), other))
    newest = [version(i) for i in reversed(range(3, MAX_VERSIONS + 3))]
    assert await store.app_versions("/prod/web") == newest
    assert await store.root_versions() == newest
    assert await store.app_versions("/other") == [version(0)]
    assert await store.app_version("/prod/web", version(2)) is None
    assert await store.root_version(version(0)) is None
    assert await store.app_versions("/never") == []


async def test_concurrent_saves_and_deletes_are_all_applied(store: ZkStore) -> None:
    await asyncio.gather(*(store.save_instance(instance(f"web.{n:03d}")) for n in range(60)))
    await asyncio.gather(
        *(store.delete_instance(f"web.{n:03d}") for n in range(0, 60, 2)),
        store.save_instances([instance("web.001", "TASK_KILLING"), instance("web.001", "TASK_KILLED")]),
        store.delete_deployment("never-stored"),
    )
    state = await store.load()
    assert [i.task_id for i in state.instances] == [f"web.{n:03d}" for n in range(1, 60, 2)]
    assert state.instances[0].state == "TASK_KILLED"


async def test_an_unreachable_ensemble_is_coordinator_unavailable() -> None:
    with pytest.raises(CoordinatorUnavailable):
        await ZkStore.open(f"zk://127.0.0.1:{free_port()}/marathon", session_timeout_s=1.0)
