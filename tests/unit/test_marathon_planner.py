"""Deployment plans: one action per changed app, stops first, then dependency layers (Marathon's DeploymentPlan)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.errors import ValidationError
from butte.frameworks.marathon.model import GroupMeta, RootGroup
from butte.frameworks.marathon.pathid import ancestors
from butte.frameworks.marathon.planner import dependency_graph, plan
from butte.wire.marathon import App, UpgradeStrategy, VersionInfo


def app(app_id: str, *deps: str, instances: int = 1, cmd: str = "sleep 100", version: str = "v1") -> App:
    info = VersionInfo(last_scaling_at=version, last_config_change_at=version)
    return App(id=app_id, cmd=cmd, instances=instances, dependencies=list(deps), version=version, version_info=info)


def root(*apps: App, groups: dict[str, tuple[str, ...]] | None = None) -> RootGroup:
    metas = {"/": GroupMeta(version="")}
    for one in apps:
        for group_id in ancestors(one.id):
            metas.setdefault(group_id, GroupMeta(version=""))
    for group_id, deps in (groups or {}).items():
        metas[group_id] = GroupMeta(version="", dependencies=deps)
    return RootGroup(apps={one.id: one for one in apps}, groups=metas)


def steps_of(original: RootGroup, target: RootGroup, restart: frozenset[str] = frozenset()) -> list[list[str]]:
    result = plan(original, target, deployment_id="d1", version="v2", restart=restart)
    return [[f"{action.kind}:{action.app_id}" for action in step.actions] for step in result.steps]


def test_empty_diff_gives_no_steps() -> None:
    group = root(app("/a"), app("/b", "/a"))
    assert steps_of(group, group) == []


def test_plan_carries_ids_and_groups() -> None:
    before, after = root(), root(app("/a"))
    result = plan(before, after, deployment_id="dep-7", version="2017-05-01T10:00:00.123Z")
    assert (result.id, result.version, result.original, result.target) == (
        "dep-7",
        "2017-05-01T10:00:00.123Z",
        before,
        after,
    )
    assert result.affected_apps == ("/a",)


def test_action_per_kind_of_change() -> None:
    before = root(app("/same"), app("/gone"), app("/scaled"), app("/changed"))
    after = root(app("/same"), app("/scaled", instances=3), app("/changed", cmd="sleep 5"), app("/new"))
    assert steps_of(before, after) == [
        ["StopApplication:/gone"],
        ["RestartApplication:/changed", "StartApplication:/new", "ScaleApplication:/scaled"],
    ]


def test_version_and_scaling_time_alone_are_no_change() -> None:
    moved = msgspec.structs.replace(
        app("/a"), version="v9", version_info=VersionInfo(last_scaling_at="v9", last_config_change_at="v1")
    )
    assert steps_of(root(app("/a", version="v1")), root(moved)) == []


def test_new_config_change_time_is_a_restart() -> None:
    # What a restart does to an app (POST /v2/apps/{id}/restart): only versionInfo.lastConfigChangeAt moves.
    assert steps_of(root(app("/a", version="v1")), root(app("/a", version="v2"))) == [["RestartApplication:/a"]]


def test_scale_keeps_config_change_time() -> None:
    scaled = msgspec.structs.replace(
        app("/a", instances=5), version="v2", version_info=VersionInfo(last_scaling_at="v2", last_config_change_at="v1")
    )
    assert steps_of(root(app("/a")), root(scaled)) == [["ScaleApplication:/a"]]


def test_config_and_instances_changed_is_a_restart() -> None:
    before, after = root(app("/a")), root(app("/a", instances=4, cmd="other"))
    assert steps_of(before, after) == [["RestartApplication:/a"]]


def test_upgrade_strategy_change_is_a_restart() -> None:
    changed = App(id="/a", cmd="sleep 100", upgrade_strategy=UpgradeStrategy(minimum_health_capacity=0.5))
    assert steps_of(root(app("/a")), root(changed)) == [["RestartApplication:/a"]]


def test_restart_set_forces_a_restart_of_an_unchanged_app() -> None:
    group = root(app("/a"), app("/b"))
    assert steps_of(group, group, frozenset({"/b"})) == [["RestartApplication:/b"]]


def test_dependencies_first_one_layer_per_depth() -> None:
    after = root(app("/db"), app("/cache"), app("/api", "/db", "/cache"), app("/web", "/api"), app("/docs"))
    assert steps_of(root(), after) == [
        ["StartApplication:/cache", "StartApplication:/db", "StartApplication:/docs"],
        ["StartApplication:/api"],
        ["StartApplication:/web"],
    ]


def test_stops_come_first_and_dependants_first() -> None:
    before = root(app("/db"), app("/api", "/db"), app("/web", "/api"), app("/keep"))
    after = root(app("/keep", cmd="new"))
    assert steps_of(before, after) == [
        ["StopApplication:/web"],
        ["StopApplication:/api"],
        ["StopApplication:/db"],
        ["RestartApplication:/keep"],
    ]


def test_only_dependencies_between_affected_apps_matter() -> None:
    before = root(app("/db"), app("/api", "/db"))
    after = root(app("/db"), app("/api", "/db", cmd="new"), app("/other", cmd="x"))
    assert steps_of(before, after) == [["RestartApplication:/api", "StartApplication:/other"]]


def test_order_holds_through_an_unchanged_app() -> None:
    before = root(app("/a"), app("/b", "/a"), app("/c", "/b"))
    after = root(app("/a", cmd="new"), app("/b", "/a"), app("/c", "/b", cmd="new"))
    assert steps_of(before, after) == [["RestartApplication:/a"], ["RestartApplication:/c"]]


def test_dependency_on_a_group_means_every_app_under_it() -> None:
    after = root(app("/data/db"), app("/data/sub/queue"), app("/web", "/data"))
    assert steps_of(root(), after) == [
        ["StartApplication:/data/db", "StartApplication:/data/sub/queue"],
        ["StartApplication:/web"],
    ]


def test_enclosing_group_dependencies_apply_to_its_apps() -> None:
    after = root(app("/db"), app("/front/web"), app("/front/deep/ui"), groups={"/front": ("/db",)})
    assert steps_of(root(), after) == [
        ["StartApplication:/db"],
        ["StartApplication:/front/deep/ui", "StartApplication:/front/web"],
    ]


def test_relative_dependencies_resolve_against_the_group() -> None:
    after = root(app("/prod/db"), app("/prod/web", "db"), app("/prod/ui", "../prod/web"))
    assert dependency_graph(after)["/prod/web"] == frozenset({"/prod/db"})
    assert dependency_graph(after)["/prod/ui"] == frozenset({"/prod/web"})


def test_unknown_dependency_and_self_are_ignored() -> None:
    after = root(app("/g/a", "/nowhere"), groups={"/g": ("/g",)})
    assert dependency_graph(after) == {"/g/a": frozenset()}


def test_cycle_raises_validation_error() -> None:
    after = root(app("/a", "/c"), app("/b", "/a"), app("/c", "/b"))
    with pytest.raises(ValidationError) as caught:
        plan(root(), after, deployment_id="d", version="v")
    assert caught.value.field == "dependencies"
    assert "/a, /b, /c" in caught.value.msg


def test_cycle_through_groups_raises() -> None:
    after = root(app("/x/a"), app("/y/b"), groups={"/x": ("/y",), "/y": ("/x",)})
    with pytest.raises(ValidationError):
        plan(root(), after, deployment_id="d", version="v")


@given(st.data())
def test_every_step_depends_only_on_earlier_steps(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 8))
    ids = [f"/app{n}" for n in range(count)]
    # Dependencies only on lower-numbered apps: acyclic by construction.
    deps = [data.draw(st.lists(st.sampled_from(ids[:n]), unique=True)) if n else [] for n in range(count)]
    target = root(*(app(ids[n], *deps[n]) for n in range(count)))
    result = plan(root(), target, deployment_id="d", version="v")
    position = {action.app_id: index for index, step in enumerate(result.steps) for action in step.actions}
    assert sorted(position) == sorted(ids)
    for n in range(count):
        assert all(position[dep] < position[ids[n]] for dep in deps[n])
