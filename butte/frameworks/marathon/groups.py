"""Operations on Marathon's group tree (:class:`RootGroup`); every one returns a new value.

Pure. Groups are keyed by absolute id and every app's and group's ancestors are listed, so "the tree" is just
two flat maps. :func:`stamp_versions` is the one place that assigns ``version`` and ``versionInfo``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from butte.core.errors import NotFound
from butte.frameworks.marathon.model import ROOT, GroupMeta, RootGroup, app_config_version
from butte.frameworks.marathon.pathid import ancestors, is_under, parent
from butte.frameworks.marathon.validation import GroupUpdate
from butte.wire.marathon import App, VersionInfo


def find_app(root: RootGroup, app_id: str) -> App:
    """The app with this absolute id.

    Raises:
        NotFound: no such app (Marathon's ``App '/x' does not exist``).
    """
    app = root.apps.get(app_id)
    if app is None:
        raise NotFound(f"App '{app_id}' does not exist")
    return app


def require_group(root: RootGroup, group_id: str) -> GroupMeta:
    """The group with this absolute id (the root always exists).

    Raises:
        NotFound: no such group (Marathon's ``Group '/x' does not exist``).
    """
    meta = root.groups.get(group_id)
    if meta is None:
        if group_id == ROOT:
            return GroupMeta(version=root.version)
        raise NotFound(f"Group '{group_id}' does not exist")
    return meta


def with_app(root: RootGroup, app: App) -> RootGroup:
    """``root`` with ``app`` added or replaced; missing parent groups are created at the app's version."""
    groups = dict(root.groups)
    for group_id in ancestors(app.id):
        groups.setdefault(group_id, GroupMeta(version=app.version or root.version))
    return RootGroup(apps={**root.apps, app.id: app}, groups=groups, version=root.version)


def without_app(root: RootGroup, app_id: str) -> RootGroup:
    """``root`` without the app (unchanged if it is not there); its groups stay, as in Marathon."""
    apps = {key: app for key, app in root.apps.items() if key != app_id}
    return RootGroup(apps=apps, groups=root.groups, version=root.version)


def apps_under(root: RootGroup, group_id: str) -> list[App]:
    """Every app below the group at any depth, by id (``/`` gives all apps)."""
    return [app for app_id, app in sorted(root.apps.items()) if is_under(app_id, group_id)]


def child_groups(root: RootGroup, group_id: str) -> list[str]:
    """The ids of the groups directly inside ``group_id``, sorted."""
    return sorted(gid for gid in root.groups if gid != ROOT and parent(gid) == group_id)


def without_group(root: RootGroup, group_id: str) -> RootGroup:
    """``root`` without the group and everything below it; removing ``/`` empties the tree but keeps ``/``."""
    apps = {key: app for key, app in root.apps.items() if not is_under(key, group_id)}
    groups = {
        gid: meta
        for gid, meta in root.groups.items()
        if gid == ROOT or (gid != group_id and not is_under(gid, group_id))
    }
    return RootGroup(apps=apps, groups=groups, version=root.version)


def apply_group_update(root: RootGroup, update: GroupUpdate, *, version: str) -> RootGroup:
    """Marathon's group PUT/POST: given app and subgroup lists replace what the group held, then stamp.

    Apps (and subgroups, with everything inside them) missing from a given list are removed; subgroups in it
    are updated recursively; given dependencies replace the group's. ``scale_by`` and ``version`` are not
    looked at: a scale (:func:`scale_group`) or a rollback replaces the update, as Marathon's GroupsResource does.
    """
    return stamp_versions(root, _updated(root, update, version), version=version)


def _updated(root: RootGroup, update: GroupUpdate, version: str) -> RootGroup:
    target = _with_group(root, update.id, version)
    if update.dependencies is not None:
        meta = target.groups[update.id]
        target = _with_meta(target, update.id, GroupMeta(meta.version, tuple(update.dependencies)))
    if update.apps is not None:
        keep = {app.id for app in update.apps}
        gone = [app_id for app_id in target.apps if parent(app_id) == update.id and app_id not in keep]
        for app_id in gone:
            target = without_app(target, app_id)
        for app in update.apps:
            target = with_app(target, app)
    if update.groups is not None:
        keep = {group.id for group in update.groups}
        for group_id in child_groups(target, update.id):
            if group_id not in keep:
                target = without_group(target, group_id)
        for group in update.groups:
            target = _updated(target, group, version)
    return target


def _with_group(root: RootGroup, group_id: str, version: str) -> RootGroup:
    """``root`` where the group and its ancestors exist (new ones at ``version``)."""
    groups = dict(root.groups)
    for gid in [group_id, *ancestors(group_id)]:
        groups.setdefault(gid, GroupMeta(version=version))
    return RootGroup(apps=root.apps, groups=groups, version=root.version)


def _with_meta(root: RootGroup, group_id: str, meta: GroupMeta) -> RootGroup:
    return RootGroup(apps=root.apps, groups={**root.groups, group_id: meta}, version=root.version)


def scale_group(root: RootGroup, group_id: str, factor: float, *, version: str) -> RootGroup:
    """Every app below the group with ``instances`` multiplied by ``factor``, rounded up (Marathon's ceil).

    Raises:
        NotFound: no such group.
    """
    require_group(root, group_id)
    apps = {
        app_id: msgspec.structs.replace(app, instances=math.ceil(app.instances * factor))
        if is_under(app_id, group_id)
        else app
        for app_id, app in root.apps.items()
    }
    target = RootGroup(apps=apps, groups=root.groups, version=root.version)
    return stamp_versions(root, target, version=version)


def restarted(app: App, *, version: str) -> App:
    """The app after a restart: a new ``version`` and ``lastConfigChangeAt``, its ``lastScalingAt`` kept."""
    scaled_at = app.version_info.last_scaling_at if app.version_info else (app.version or version)
    info = VersionInfo(last_scaling_at=scaled_at, last_config_change_at=version)
    return msgspec.structs.replace(app, version=version, version_info=info)


def stamp_versions(original: RootGroup, target: RootGroup, *, version: str) -> RootGroup:
    """``target`` with Marathon's versions: new or changed apps and groups at ``version``, the rest as before.

    A new app or a configuration change sets ``lastScalingAt`` and ``lastConfigChangeAt``; a change of
    ``instances`` alone sets only ``lastScalingAt``. Apps are compared without ``version``/``versionInfo``, and
    an app already at ``version`` (a restart, or a second stamp) is kept as it is. The root always takes
    ``version``: every deployment is a new root version in Marathon.
    """
    apps = {app_id: _stamped(original.apps.get(app_id), app, version) for app_id, app in target.apps.items()}
    changed = _changed_ids(original, target, apps)
    groups = {
        gid: GroupMeta(version, meta.dependencies)
        if gid == ROOT or _group_changed(gid, original, meta, changed)
        else meta
        for gid, meta in target.groups.items()
    }
    return RootGroup(apps=apps, groups=groups, version=version)


def _stamped(old: App | None, new: App, version: str) -> App:
    if new.version == version:
        return new
    if old is None:
        return _at(new, version, VersionInfo(last_scaling_at=version, last_config_change_at=version))
    if _config(old) == _config(new):
        return old
    if _config(old) == _config(msgspec.structs.replace(new, instances=old.instances)):
        return _at(new, version, VersionInfo(last_scaling_at=version, last_config_change_at=app_config_version(old)))
    return _at(new, version, VersionInfo(last_scaling_at=version, last_config_change_at=version))


def _config(app: App) -> App:
    return msgspec.structs.replace(app, version=None, version_info=None)


def _at(app: App, version: str, info: VersionInfo) -> App:
    return msgspec.structs.replace(app, version=version, version_info=info)


def _changed_ids(original: RootGroup, target: RootGroup, stamped: Mapping[str, App]) -> set[str]:
    """Ids of apps and groups added, removed or changed between ``original`` and the stamped target."""
    apps = {app_id for app_id, app in stamped.items() if original.apps.get(app_id) is not app}
    apps |= original.apps.keys() - stamped.keys()
    groups = original.groups.keys() ^ target.groups.keys()
    return apps | groups


def _group_changed(gid: str, original: RootGroup, meta: GroupMeta, changed: set[str]) -> bool:
    before = original.groups.get(gid)
    if before is None or before.dependencies != meta.dependencies:
        return True
    return any(item == gid or is_under(item, gid) for item in changed)


def group_dependencies_of(root: RootGroup, app_id: str) -> set[str]:
    """The app's own dependencies plus those of every group enclosing it (what the planner orders by)."""
    app = root.apps.get(app_id)
    found = set(app.dependencies) if app else set()
    for group_id in ancestors(app_id):
        meta = root.groups.get(group_id)
        if meta is not None:
            found.update(meta.dependencies)
    return found
