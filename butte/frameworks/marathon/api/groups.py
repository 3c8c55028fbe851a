"""``/v2/groups``: read the tree, create, update (full, ``scaleBy``, rollback to ``version``, ``dryRun``),
delete, and the group's versions.

A PUT body holding ``version`` rolls the group back to the subtree it had in that root version; ``version``
wins over ``scaleBy`` (``GroupsResource.scala``). ``dryRun=true`` answers the plan's steps and deploys nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from butte.core.errors import Conflict, ValidationError
from butte.frameworks.marathon import groups as groupfn
from butte.frameworks.marathon.api.apps import deployments_by_app, render_app
from butte.frameworks.marathon.api.deployments import commit, deployment_response, new_version
from butte.frameworks.marathon.api.params import (
    MethodNotAllowed,
    control_of,
    flag,
    group_embeds,
    json_response,
    not_found,
    read_json,
    tail_segments,
)
from butte.frameworks.marathon.api.render import Json, app_json, group_json, steps_json
from butte.frameworks.marathon.model import ROOT, RootGroup
from butte.frameworks.marathon.pathid import canonical, is_under
from butte.frameworks.marathon.planner import plan as make_plan
from butte.frameworks.marathon.validation import parse_group_update

Handler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route ``/v2/groups...`` by method and tail (``versions``, ``versions/{ts}`` or a group id).

    Raises:
        NotFound: no group route has this shape.
        MethodNotAllowed: the method is not served here.
    """
    tail = request.match_info.get("tail", "")
    if tail and not tail.startswith("/"):
        raise not_found()
    segments = tail_segments(request)
    return await _route(request.method, segments)(request, segments)


def _route(method: str, segments: Sequence[str]) -> Handler:
    at_version = len(segments) >= 2 and segments[-2] == "versions"
    if method == "GET":
        if segments and segments[-1] == "versions":
            return list_versions
        return get_version if at_version else get_group
    routes: dict[str, Handler] = {
        "POST": create_group,
        # The client's rollback_group PUTs to .../versions/{ts}; Marathon itself rolls back on a body
        # holding only ``version``. Both are served.
        "PUT": rollback_path if at_version else update_group,
        "DELETE": delete_group,
        "PATCH": patch_group,
    }
    if method not in routes:
        raise MethodNotAllowed(f"{method} is not allowed on /v2/groups")
    return routes[method]


def group_id_of(segments: Sequence[str]) -> str:
    """The absolute group id of the path segments (the root for none). Raises: ValidationError."""
    return canonical("/" + "/".join(segments))


def render_group(request: web.Request, root: RootGroup, group_id: str) -> Json:
    """GroupInfo of ``group_id`` in ``root`` with the request's ``embed`` (default: groups and apps)."""
    control = control_of(request)
    with_groups, with_apps, app_embed = group_embeds(request.query)
    apps: Json | None = None
    if with_apps:
        locks = deployments_by_app(control)
        below = {i: a for i, a in root.apps.items() if group_id == ROOT or is_under(i, group_id)}
        apps = {i: render_app(control, a, app_embed, locks) if app_embed else app_json(a) for i, a in below.items()}
    return group_json(root, group_id, groups=with_groups, apps=apps)


async def get_group(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/groups[/{id}]``: the GroupInfo. Raises: NotFound."""
    root, group_id = control_of(request).root(), group_id_of(segments)
    groupfn.require_group(root, group_id)
    return json_response(render_group(request, root, group_id))


async def list_versions(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/groups/{id}/versions``: a bare array, newest first. Raises: NotFound."""
    return json_response(list(await control_of(request).group_versions(group_id_of(segments[:-1]))))


async def get_version(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/groups/{id}/versions/{ts}``: the group as it was. Raises: NotFound."""
    old, group_id = await control_of(request).root_version(segments[-1]), group_id_of(segments[:-2])
    groupfn.require_group(old, group_id)
    return json_response(render_group(request, old, group_id))


async def create_group(request: web.Request, segments: list[str]) -> web.Response:
    """``POST /v2/groups[/{base}]``: 201, ``Location`` and a deployment result.

    Raises:
        Conflict: the group exists already.
        InvalidDefinition: the body does not validate (422).
    """
    root, base = control_of(request).root(), group_id_of(segments)
    body = await read_json(request)
    raw_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(raw_id, str):
        raise ValidationError("id", "a group to create needs an id")
    group_id = canonical(raw_id, base)
    if group_id in root.groups:
        raise Conflict(f"Group {group_id} is already created. Use PUT to change this group.")
    version = new_version(request)
    update = parse_group_update({**body, "id": group_id}, group_id=group_id)
    plan = await commit(request, root, groupfn.apply_group_update(root, update, version=version), version=version)
    return deployment_response(plan, status=201, location=f"{request.url.origin()}/v2/groups{group_id}")


def restored(root: RootGroup, old: RootGroup, group_id: str) -> RootGroup:
    """``root`` with the subtree at ``group_id`` as it was in ``old`` (a group rollback)."""

    def inside(path: str) -> bool:
        return path == group_id or group_id == ROOT or is_under(path, group_id)

    apps = {i: a for i, a in root.apps.items() if not inside(i)} | {i: a for i, a in old.apps.items() if inside(i)}
    groups = {i: g for i, g in root.groups.items() if not inside(i)} | {
        i: g for i, g in old.groups.items() if inside(i)
    }
    for ancestor in (i for i in root.groups if i not in groups and any(is_under(g, i) for g in groups)):
        groups[ancestor] = root.groups[ancestor]
    return RootGroup(apps=apps, groups=groups, version=root.version)


async def target_of_update(request: web.Request, root: RootGroup, group_id: str, version: str) -> RootGroup:
    """The target root of a group PUT: rollback, scale or a full update.

    Raises:
        NotFound: unknown version to roll back to, or scaling an unknown group.
        InvalidDefinition: the body does not validate.
    """
    body = await read_json(request)
    if isinstance(body, dict) and isinstance(body.get("version"), str):
        old = await control_of(request).root_version(body["version"])
        groupfn.require_group(old, group_id)
        return restored(root, old, group_id)
    if (
        isinstance(body, dict)
        and isinstance(body.get("scaleBy"), int | float)
        and not isinstance(body["scaleBy"], bool)
    ):
        groupfn.require_group(root, group_id)
        return groupfn.scale_group(root, group_id, float(body["scaleBy"]), version=version)
    fields = {**body, "id": group_id} if isinstance(body, dict) else body
    update = parse_group_update(fields, group_id=group_id)
    return groupfn.apply_group_update(root, update, version=version)


async def update_group(request: web.Request, segments: list[str]) -> web.Response:
    """``PUT /v2/groups/{id}``: a deployment result, or ``{"steps"}`` with ``dryRun=true``.

    Raises:
        NotFound, Conflict, InvalidDefinition: as for every deploying call.
    """
    root, group_id, version = control_of(request).root(), group_id_of(segments), new_version(request)
    target = await target_of_update(request, root, group_id, version)
    if flag(request, "dryRun"):
        stamped = groupfn.stamp_versions(root, target, version=version)
        dry = make_plan(root, stamped, deployment_id=str(uuid.uuid4()), version=version, restart=frozenset())
        return json_response({"steps": steps_json(dry.steps)})
    return deployment_response(await commit(request, root, target, version=version))


async def rollback_path(request: web.Request, segments: list[str]) -> web.Response:
    """``PUT /v2/groups/{id}/versions/{ts}`` (what the Python client sends): roll the group back.

    Raises:
        NotFound: unknown group or version.
    """
    root, group_id = control_of(request).root(), group_id_of(segments[:-2])
    old = await control_of(request).root_version(segments[-1])
    groupfn.require_group(old, group_id)
    plan = await commit(request, root, restored(root, old, group_id), version=new_version(request))
    return deployment_response(plan)


async def delete_group(request: web.Request, segments: list[str]) -> web.Response:
    """``DELETE /v2/groups/{id}``: remove the group and every app below it. Raises: NotFound."""
    root, group_id = control_of(request).root(), group_id_of(segments)
    groupfn.require_group(root, group_id)
    target = groupfn.without_group(root, group_id)
    return deployment_response(await commit(request, root, target, version=new_version(request)))


async def patch_group(request: web.Request, segments: list[str]) -> web.Response:
    """``PATCH /v2/groups/{id}`` (1.9+, ``{"enforceRole": bool}``) on a top-level group.

    Butte keeps no per-group role enforcement, so this only validates and answers the group (without
    ``enforceRole``, which the 0.13.0 client's model rejects).

    Raises:
        NotFound: unknown group.
        ValidationError: not a top-level group, or no boolean ``enforceRole``.
    """
    root, group_id = control_of(request).root(), group_id_of(segments)
    groupfn.require_group(root, group_id)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("enforceRole"), bool):
        raise ValidationError("enforceRole", "expected a boolean")
    if group_id == ROOT or "/" in group_id[1:]:
        raise ValidationError("id", "enforceRole can only be set on top-level groups")
    return json_response(render_group(request, root, group_id))
