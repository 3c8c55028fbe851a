"""Marathon's store in SQLite: every kind of value round-trips, versions are capped, state survives a reopen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.errors import ValidationError
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
from butte.frameworks.marathon.store import (
    MAX_VERSIONS,
    decode_instance,
    encode_instance,
    newest_first,
    open_store,
    versions_to_drop,
)
from butte.frameworks.marathon.store_sqlite import SqliteStore
from butte.frameworks.marathon.store_zk import Op, batches
from butte.wire.marathon import (
    App,
    CommandCheck,
    Container,
    Docker,
    DockerPortMapping,
    FetchUri,
    HealthCheck,
    UpgradeStrategy,
    VersionInfo,
)

T0 = 1_700_000_000.0


def version(i: int) -> str:
    return iso_timestamp(T0 + i)


def rich_app(app_id: str = "/prod/web", at: int = 0, instances: int = 2) -> App:
    return App(
        id=app_id,
        cmd="python3 -m http.server $PORT0",
        instances=instances,
        env={"MODE": "prod"},
        labels={"team": "a"},
        constraints=[["hostname", "UNIQUE"]],
        container=Container(docker=Docker(image="nginx:1", port_mappings=[DockerPortMapping(container_port=80)])),
        health_checks=[
            HealthCheck(protocol="COMMAND", command=CommandCheck(value="true")),
            HealthCheck(path="/health", port_index=0, grace_period_seconds=5),
        ],
        upgrade_strategy=UpgradeStrategy(minimum_health_capacity=0.5, maximum_over_capacity=0.0),
        unreachable_strategy="disabled",
        fetch=[FetchUri(uri="http://example.invalid/a.tgz", extract=False)],
        version=version(at),
        version_info=VersionInfo(last_scaling_at=version(at), last_config_change_at=version(at)),
    )


def root_at(at: int, *apps: App) -> RootGroup:
    groups = {"/": GroupMeta(version=version(at)), "/prod": GroupMeta(version=version(at), dependencies=("/db",))}
    return RootGroup(apps={app.id: app for app in apps}, groups=groups, version=version(at))


def instance(task_id: str, state: str = "TASK_RUNNING", healthy: bool | None = True) -> Instance:
    health = None if healthy is None else HealthResult(alive=healthy, consecutive_failures=1, last_success=T0 + 2.5)
    return Instance(
        task_id=task_id,
        app_id="/prod/web",
        version=version(0),
        config_version=version(0),
        agent_id="agent-1",
        host="10.0.0.1",
        staged_at=T0 + 0.125,
        ports=(31000, 31001),
        state=state,
        started_at=T0 + 1.0,
        health=health,
        ready=True,
        attributes={"rack": "a"},
        message="started",
    )


def plan_for(original: RootGroup, target: RootGroup) -> DeploymentPlan:
    steps = (Step((Action("StartApplication", "/prod/web"),)), Step((Action("ScaleApplication", "/prod/web"),)))
    return DeploymentPlan(id="d-1", version=target.version, original=original, target=target, steps=steps)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "marathon.db")
    yield opened
    await opened.close()


async def test_an_empty_store_loads_nothing(store: SqliteStore) -> None:
    state = await store.load()
    assert (state.framework_id, state.root, state.deployments, state.instances) == (None, RootGroup(), (), ())
    assert await store.root_versions() == []
    assert await store.app_versions("/prod/web") == []
    assert await store.app_version("/prod/web", version(0)) is None
    assert await store.root_version(version(0)) is None


async def test_every_kind_round_trips_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "work" / "marathon.db"
    root = root_at(1, rich_app(at=1))
    plan = plan_for(root_at(0), root)
    running = [instance("web.1"), instance("web.2", "TASK_STAGING", healthy=None), instance("web.3", healthy=False)]
    store = await SqliteStore.open(path)
    await store.save_framework_id("fw-0001")
    await store.save_root(root)
    await store.save_deployment(plan, 1)
    await store.save_instances(running)
    await store.close()

    reopened = await SqliteStore.open(path)
    state = await reopened.load()
    assert state.framework_id == "fw-0001"
    assert state.root == root
    assert state.root.apps["/prod/web"].unreachable_strategy == "disabled"
    assert state.deployments == ((plan, 1),)
    assert state.instances == tuple(running)
    assert await reopened.app_version("/prod/web", version(1)) == rich_app(at=1)
    assert await reopened.root_version(version(1)) == root
    await reopened.close()


async def test_app_and_root_versions_are_listed_newest_first(store: SqliteStore) -> None:
    other = App(id="/other", cmd="sleep 1000", version=version(0))
    await store.save_root(root_at(0, rich_app(at=0), other))
    await store.save_root(root_at(5, rich_app(at=5), other))
    await store.save_root(root_at(3, rich_app(at=3), other))  # a version older than the newest stays in order
    assert await store.app_versions("/prod/web") == [version(5), version(3), version(0)]
    assert await store.app_versions("/other") == [version(0)]  # unchanged apps get no new entry
    assert await store.root_versions() == [version(5), version(3), version(0)]
    assert await store.app_version("/prod/web", version(5)) == rich_app(at=5)
    assert (await store.load()).root == root_at(3, rich_app(at=3), other)


async def test_versions_beyond_fifty_are_dropped(store: SqliteStore) -> None:
    for i in range(MAX_VERSIONS + 5):
        await store.save_root(root_at(i, rich_app(at=i)))
    newest = [version(i) for i in reversed(range(5, MAX_VERSIONS + 5))]
    assert await store.app_versions("/prod/web") == newest
    assert await store.root_versions() == newest
    assert await store.app_version("/prod/web", version(4)) is None
    assert await store.root_version(version(0)) is None


async def test_a_rollback_to_an_old_version_is_kept_even_past_the_cap(store: SqliteStore) -> None:
    for i in range(1, MAX_VERSIONS + 1):
        await store.save_root(root_at(i, rich_app(at=i)))
    await store.save_root(root_at(MAX_VERSIONS + 1, rich_app(at=0)))  # the current root uses the oldest version
    assert version(0) in await store.app_versions("/prod/web")
    assert len(await store.app_versions("/prod/web")) == MAX_VERSIONS + 1


async def test_deleted_deployments_and_instances_are_gone(store: SqliteStore) -> None:
    root = root_at(1, rich_app(at=1))
    await store.save_deployment(plan_for(RootGroup(), root), 0)
    await store.save_instances([instance("web.1"), instance("web.2")])
    await store.delete_deployment("d-1")
    await store.delete_instance("web.1")
    await store.delete_instance("never-stored")
    state = await store.load()
    assert state.deployments == ()
    assert [i.task_id for i in state.instances] == ["web.2"]


async def test_a_save_replaces_the_stored_value(store: SqliteStore) -> None:
    root = root_at(1, rich_app(at=1))
    await store.save_deployment(plan_for(RootGroup(), root), 0)
    await store.save_deployment(plan_for(RootGroup(), root), 1)
    await store.save_instance(instance("web.1", "TASK_STAGING"))
    await store.save_instances([instance("web.1", "TASK_STARTING"), instance("web.1", "TASK_RUNNING")])
    state = await store.load()
    assert [step for _, step in state.deployments] == [1]
    assert [i.state for i in state.instances] == ["TASK_RUNNING"]


async def test_concurrent_saves_from_tasks_are_all_applied(store: SqliteStore) -> None:
    saves = [store.save_instance(instance(f"web.{n:03d}")) for n in range(100)]
    deletes = [store.delete_instance(f"web.{n:03d}") for n in range(0, 100, 2)]
    await asyncio.gather(*saves)
    await asyncio.gather(*deletes, *(store.save_root(root_at(i, rich_app(at=i))) for i in range(10)))
    state = await store.load()
    assert [i.task_id for i in state.instances] == [f"web.{n:03d}" for n in range(1, 100, 2)]
    assert len(await store.root_versions()) == 10


async def test_open_store_without_zookeeper_is_sqlite_under_the_work_dir(tmp_path: Path) -> None:
    store = await open_store(tmp_path, None)
    await store.save_framework_id("fw-1")
    await store.close()
    assert isinstance(store, SqliteStore)
    assert (tmp_path / "marathon.db").exists()


def test_versions_sort_by_time_and_the_cap_spares_what_is_kept() -> None:
    versions = [version(i) for i in range(MAX_VERSIONS + 3)]
    assert newest_first(versions)[0] == version(MAX_VERSIONS + 2)
    assert versions_to_drop(versions) == [version(2), version(1), version(0)]
    assert versions_to_drop(versions, keep=[version(1)]) == [version(2), version(0)]
    assert newest_first(["not-a-time", version(0)]) == [version(0), "not-a-time"]


floats = st.floats(allow_nan=False, allow_infinity=False)
health = st.builds(HealthResult, alive=st.booleans(), last_failure=st.none() | floats, last_failure_cause=st.text())
instances = st.builds(
    Instance,
    task_id=st.text(min_size=1),
    staged_at=floats,
    ports=st.lists(st.integers(0, 65535), max_size=3).map(tuple),
    health=st.none() | health,
    unreachable_since=st.none() | floats,
    attributes=st.dictionaries(st.text(), st.text(), max_size=2),
)


@given(instances)
def test_instances_encode_and_decode_to_the_same_value(value: Instance) -> None:
    assert decode_instance(encode_instance(value)) == value


def test_zookeeper_writes_split_only_where_one_request_would_be_too_large() -> None:
    ops = [Op("set", f"/s/instances/{n}", b"x" * 300) for n in range(10)]
    assert batches(ops, limit_bytes=10_000) == [ops]
    runs = batches(ops, limit_bytes=1_000)
    assert [len(run) for run in runs] == [3, 3, 3, 1] and [op for run in runs for op in run] == ops
    with pytest.raises(ValidationError):
        batches([Op("set", "/s/root", b"x" * 2_000)], limit_bytes=1_000)
