"""The group tree: adding and removing apps and groups, group updates, scaling and the versioning rule."""

from __future__ import annotations

import msgspec
import pytest

from butte.core.errors import NotFound
from butte.frameworks.marathon.groups import (
    apply_group_update,
    apps_under,
    child_groups,
    find_app,
    group_dependencies_of,
    require_group,
    restarted,
    scale_group,
    stamp_versions,
    with_app,
    without_app,
    without_group,
)
from butte.frameworks.marathon.model import ROOT, GroupMeta, RootGroup
from butte.frameworks.marathon.validation import GroupUpdate, parse_group_update
from butte.wire.marathon import App, VersionInfo

V0, V1, V2 = "2017-01-01T00:00:00.000Z", "2017-01-02T00:00:00.000Z", "2017-01-03T00:00:00.000Z"


def an_app(app_id: str, **fields: object) -> App:
    return App(id=app_id, cmd="sleep 100", **fields)  # type: ignore[arg-type]


def tree(*apps: App) -> RootGroup:
    """A root holding ``apps``, stamped at V0."""
    root = RootGroup()
    for app in apps:
        root = with_app(root, app)
    return stamp_versions(RootGroup(), root, version=V0)


def test_with_app_creates_missing_parent_groups_at_the_apps_version() -> None:
    root = with_app(RootGroup(version=V0), an_app("/shop/api/web", version=V1))
    assert set(root.groups) == {ROOT, "/shop", "/shop/api"}
    assert root.groups["/shop/api"].version == V1
    assert find_app(root, "/shop/api/web").id == "/shop/api/web"


def test_find_app_and_require_group_raise_marathons_not_found() -> None:
    root = tree(an_app("/shop/web"))
    with pytest.raises(NotFound, match=r"^App '/nope' does not exist$"):
        find_app(root, "/nope")
    with pytest.raises(NotFound, match=r"^Group '/nope' does not exist$"):
        require_group(root, "/nope")
    assert require_group(root, "/shop").version == V0
    assert require_group(root, ROOT).version == V0


def test_without_app_keeps_groups() -> None:
    root = without_app(tree(an_app("/shop/web")), "/shop/web")
    assert root.apps == {} and "/shop" in root.groups


def test_apps_under_and_child_groups() -> None:
    root = tree(an_app("/a"), an_app("/shop/web"), an_app("/shop/api/v1"), an_app("/shopping/x"))
    assert [a.id for a in apps_under(root, "/shop")] == ["/shop/api/v1", "/shop/web"]
    assert len(apps_under(root, ROOT)) == 4
    assert child_groups(root, ROOT) == ["/shop", "/shopping"]
    assert child_groups(root, "/shop") == ["/shop/api"]


def test_without_group_removes_everything_below() -> None:
    root = tree(an_app("/a"), an_app("/shop/web"), an_app("/shop/api/v1"))
    pruned = without_group(root, "/shop")
    assert set(pruned.apps) == {"/a"} and set(pruned.groups) == {ROOT}
    emptied = without_group(root, ROOT)
    assert emptied.apps == {} and set(emptied.groups) == {ROOT}


def test_group_update_replaces_the_app_and_group_lists() -> None:
    root = tree(an_app("/shop/old"), an_app("/shop/web"), an_app("/shop/gone/x"), an_app("/other"))
    body = {
        "apps": [{"id": "web", "cmd": "new"}, {"id": "fresh", "cmd": "x"}],
        "groups": [{"id": "api", "apps": [{"id": "v1", "cmd": "y"}]}],
        "dependencies": ["/other"],
    }
    target = apply_group_update(root, parse_group_update(body, group_id="/shop"), version=V1)
    assert set(target.apps) == {"/shop/web", "/shop/fresh", "/shop/api/v1", "/other"}
    assert target.apps["/shop/web"].cmd == "new"
    assert set(target.groups) == {ROOT, "/shop", "/shop/api"}
    assert target.groups["/shop"] == GroupMeta(version=V1, dependencies=("/other",))
    assert target.apps["/other"] is root.apps["/other"]


def test_group_update_leaves_what_it_does_not_name() -> None:
    root = tree(an_app("/shop/web"), an_app("/shop/api/v1"))
    target = apply_group_update(root, GroupUpdate(id="/shop", dependencies=("/db",)), version=V1)
    assert target.apps == root.apps
    assert target.groups["/shop/api"].version == V0
    assert target.groups["/shop"].dependencies == ("/db",)


def test_group_update_creates_parents() -> None:
    target = apply_group_update(RootGroup(), GroupUpdate(id="/a/b/c", apps=(an_app("/a/b/c/x"),)), version=V1)
    assert {"/a", "/a/b", "/a/b/c"} <= set(target.groups)
    assert target.apps["/a/b/c/x"].version == V1


def test_scale_group_rounds_up_and_counts_as_scaling() -> None:
    root = tree(an_app("/shop/web", instances=3), an_app("/shop/api/v1", instances=1), an_app("/other", instances=2))
    scaled = scale_group(root, "/shop", 1.5, version=V1)
    assert scaled.apps["/shop/web"].instances == 5
    assert scaled.apps["/shop/api/v1"].instances == 2
    assert scaled.apps["/other"] is root.apps["/other"]
    assert scaled.apps["/shop/web"].version_info == VersionInfo(last_scaling_at=V1, last_config_change_at=V0)
    with pytest.raises(NotFound):
        scale_group(root, "/nope", 2, version=V1)


def test_stamp_versions_new_app_sets_both_times() -> None:
    target = stamp_versions(RootGroup(), with_app(RootGroup(), an_app("/web")), version=V1)
    assert target.apps["/web"].version == V1
    assert target.apps["/web"].version_info == VersionInfo(last_scaling_at=V1, last_config_change_at=V1)
    assert target.version == V1


def test_stamp_versions_scale_only_keeps_last_config_change() -> None:
    root = tree(an_app("/web"))
    target = with_app(root, msgspec.structs.replace(root.apps["/web"], instances=4))
    app = stamp_versions(root, target, version=V1).apps["/web"]
    assert app.version == V1
    assert app.version_info == VersionInfo(last_scaling_at=V1, last_config_change_at=V0)


def test_stamp_versions_config_change_sets_both() -> None:
    root = tree(an_app("/web"))
    target = with_app(root, msgspec.structs.replace(root.apps["/web"], instances=4, cmd="other"))
    app = stamp_versions(root, target, version=V1).apps["/web"]
    assert app.version_info == VersionInfo(last_scaling_at=V1, last_config_change_at=V1)


def test_stamp_versions_unchanged_app_keeps_its_version_even_without_one() -> None:
    root = tree(an_app("/web"), an_app("/shop/api"))
    target = with_app(root, an_app("/web"))  # as parsed again from a PUT: no version
    stamped = stamp_versions(root, target, version=V1)
    assert stamped.apps["/web"] is root.apps["/web"]
    assert stamped.groups["/shop"].version == V0
    assert stamped.version == V1 and stamped.groups[ROOT].version == V1


def test_stamp_versions_marks_changed_groups() -> None:
    root = tree(an_app("/shop/web"), an_app("/shop/api/v1"), an_app("/other/x"))
    target = with_app(root, msgspec.structs.replace(root.apps["/shop/api/v1"], cmd="changed"))
    stamped = stamp_versions(root, target, version=V1)
    assert stamped.groups["/shop"].version == V1
    assert stamped.groups["/shop/api"].version == V1
    assert stamped.groups["/other"].version == V0
    removed = stamp_versions(root, without_app(root, "/other/x"), version=V2)
    assert removed.groups["/other"].version == V2 and removed.groups["/shop"].version == V0


def test_stamping_twice_changes_nothing() -> None:
    root = tree(an_app("/web"))
    target = with_app(root, msgspec.structs.replace(root.apps["/web"], instances=2))
    once = stamp_versions(root, target, version=V1)
    assert stamp_versions(root, once, version=V1) == once


def test_restart_survives_stamping() -> None:
    root = tree(an_app("/web"))
    again = restarted(root.apps["/web"], version=V1)
    assert again.version_info == VersionInfo(last_scaling_at=V0, last_config_change_at=V1)
    stamped = stamp_versions(root, with_app(root, again), version=V1)
    assert stamped.apps["/web"] == again


def test_group_dependencies_include_the_enclosing_groups() -> None:
    root = tree(an_app("/shop/api/web", dependencies=["/db"]))
    root = apply_group_update(root, GroupUpdate(id="/shop", dependencies=("/cache",)), version=V1)
    root = apply_group_update(root, GroupUpdate(id="/shop/api", dependencies=("/queue",)), version=V2)
    assert group_dependencies_of(root, "/shop/api/web") == {"/db", "/cache", "/queue"}
