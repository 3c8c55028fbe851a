"""``/v2/apps``: list, create, update (full, partial, rollback), delete, restart, versions, and the task paths.

App ids hold slashes and clients double them (``/v2/apps//shop/web/tasks``), so one catch-all route hands
the tail to :func:`dispatch`, which reads the suffix (``tasks``, ``versions``, ``restart``, ``*``) by method,
as Marathon's ``{id:.+}/suffix`` routes do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from aiohttp import web

from butte.core.errors import Conflict, NotFound
from butte.frameworks.marathon import groups as groupfn
from butte.frameworks.marathon.api import tasks
from butte.frameworks.marathon.api.deployments import commit, deployment_response, new_version
from butte.frameworks.marathon.api.params import (
    MethodNotAllowed,
    app_embeds,
    control_of,
    flag,
    json_response,
    label_selector,
    not_found,
    read_json,
    tail_segments,
)
from butte.frameworks.marathon.api.render import Json, app_info, app_json
from butte.frameworks.marathon.control import MarathonControl
from butte.frameworks.marathon.model import RootGroup
from butte.frameworks.marathon.pathid import canonical
from butte.frameworks.marathon.validation import is_rollback, merge_partial, parse_app
from butte.wire.marathon import App

Handler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]

# Marathon embeds these on every app read, whatever the query says (compatibility, ``AppsResource``).
LIST_EMBEDS = frozenset({"counts", "deployments"})
SINGLE_EMBEDS = frozenset({"counts", "deployments", "tasks", "lastTaskFailure"})


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route ``/v2/apps...`` by method and the shape of the tail.

    Raises:
        NotFound: no app route has this shape.
        MethodNotAllowed: the path exists but not for this method.
    """
    tail = request.match_info.get("tail", "")
    if tail and not tail.startswith("/"):
        raise not_found()
    segments = tail_segments(request)
    handler = _collection_route(request.method) if not segments else _item_route(request.method, segments)
    return await handler(request, segments)


def _collection_route(method: str) -> Handler:
    routes: dict[str, Handler] = {"GET": list_apps, "POST": create_app, "PUT": put_apps, "PATCH": patch_apps}
    if method not in routes:
        raise MethodNotAllowed(f"{method} is not allowed on /v2/apps")
    return routes[method]


def _item_route(method: str, segments: Sequence[str]) -> Handler:
    last, count = segments[-1], len(segments)
    if method == "GET":
        if last == "*":
            return apps_under_group
        if last == "versions" and count > 1:
            return list_versions
        if count > 2 and segments[-2] == "versions":
            return get_version
        return app_tasks if last == "tasks" and count > 1 else get_app
    if method == "DELETE":
        if count > 2 and segments[-2] == "tasks":
            return kill_task
        return kill_tasks if last == "tasks" and count > 1 else delete_app
    if method == "POST" and last == "restart" and count > 1:
        return restart_app
    if method in ("PUT", "PATCH"):
        return update_app
    raise MethodNotAllowed(f"{method} is not allowed here")


def app_id_of(segments: Sequence[str]) -> str:
    """The absolute app id the path segments name.

    Raises:
        ValidationError: not a valid path id.
    """
    return canonical("/" + "/".join(segments))


def deployments_by_app(control: MarathonControl) -> dict[str, list[str]]:
    """Ids of the running deployments touching each app."""
    found: dict[str, list[str]] = {}
    for status in control.deployments():
        for app_id in status.plan.affected_apps:
            found.setdefault(app_id, []).append(status.plan.id)
    return found


def render_app(control: MarathonControl, app: App, embed: Collection[str], locks: Mapping[str, list[str]]) -> Json:
    """AppInfo of one app with the reads its embeds need."""
    failure = control.last_task_failure(app.id) if "lastTaskFailure" in embed else None
    readiness = [r for s in control.deployments() for r in s.readiness] if "readiness" in embed else []
    return app_info(
        app,
        control.instances(app.id),
        embed=embed,
        deployment_ids=locks.get(app.id, []),
        last_failure=failure,
        now=control.now(),
        readiness=readiness,
    )


def _app_filter(request: web.Request) -> Callable[[App], bool]:
    cmd, app_id, label = request.query.get("cmd"), request.query.get("id"), request.query.get("label")
    selector = label_selector(label) if label else None

    def keep(app: App) -> bool:
        if cmd and cmd not in (app.cmd or ""):
            return False
        if app_id and app_id not in app.id:
            return False
        return selector is None or selector(app.labels)

    return keep


async def list_apps(request: web.Request, _: list[str]) -> web.Response:
    """``GET /v2/apps``: ``{"apps": [AppInfo]}`` filtered by ``cmd``, ``id`` and ``label``."""
    control = control_of(request)
    embed = LIST_EMBEDS | app_embeds(request.query.getall("embed", []))
    keep, locks = _app_filter(request), deployments_by_app(control)
    apps = [render_app(control, app, embed, locks) for _, app in sorted(control.root().apps.items()) if keep(app)]
    return json_response({"apps": apps})


async def get_app(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/apps/{id}``: ``{"app": AppInfo}`` with tasks, counts, deployments and last failure.

    Raises:
        NotFound: no such app.
    """
    control = control_of(request)
    app = groupfn.find_app(control.root(), app_id_of(segments))
    embed = SINGLE_EMBEDS | app_embeds(request.query.getall("embed", []))
    return json_response({"app": render_app(control, app, embed, deployments_by_app(control))})


async def apps_under_group(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/apps/{group}/*``: ``{"*": [AppInfo]}`` for every app below the group."""
    control = control_of(request)
    group_id = app_id_of(segments[:-1]) if len(segments) > 1 else "/"
    prefix = group_id.rstrip("/") + "/"
    embed = SINGLE_EMBEDS | app_embeds(request.query.getall("embed", []))
    locks = deployments_by_app(control)
    found = [
        render_app(control, app, embed, locks) for i, app in sorted(control.root().apps.items()) if i.startswith(prefix)
    ]
    return json_response({"*": found})


async def list_versions(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/apps/{id}/versions``: ``{"versions": [...]}``, newest first. Raises: NotFound."""
    versions = await control_of(request).app_versions(app_id_of(segments[:-1]))
    return json_response({"versions": list(versions)})


async def get_version(request: web.Request, segments: list[str]) -> web.Response:
    """``GET /v2/apps/{id}/versions/{ts}``: the bare stored definition. Raises: NotFound."""
    app = await control_of(request).app_version(app_id_of(segments[:-2]), segments[-1])
    return json_response(app_json(app))


def _publish_post(request: web.Request, app: App) -> None:
    """Marathon publishes ``api_post_event`` for every app written through the API."""
    fields = {"clientIp": request.remote, "uri": request.path, "appDefinition": app_json(app)}
    control_of(request).publish("api_post_event", fields)


async def create_app(request: web.Request, _: list[str]) -> web.Response:
    """``POST /v2/apps``: 201, ``Location``, the deployment header and the new AppInfo.

    Raises:
        Conflict: an app with this id exists (Marathon: ``An app with id [/x] already exists.``).
        InvalidDefinition: the definition does not validate (422).
    """
    control = control_of(request)
    app = parse_app(await read_json(request))
    root = control.root()
    if app.id in root.apps:
        raise Conflict(f"An app with id [{app.id}] already exists.")
    plan = await commit(request, root, groupfn.with_app(root, app), version=new_version(request))
    created = plan.target.apps.get(app.id, app)
    _publish_post(request, created)
    body = app_info(created, [], embed=LIST_EMBEDS, deployment_ids=[plan.id])
    location = f"{request.url.origin()}/v2/apps{app.id}"
    headers = {"Location": location, "Marathon-Deployment-Id": plan.id}
    return json_response(body, status=201, headers=headers)


def updated_app(request: web.Request, app_id: str, body: Any, existing: App | None) -> App:
    """The app a PUT/PATCH body asks for: merged into the existing app (partial) or read whole.

    Raises:
        InvalidDefinition: the result does not validate.
    """
    partial = request.method == "PATCH" or flag(request, "partialUpdate", default=True)
    if existing is not None and partial:
        return merge_partial(existing, body)
    whole = {**body, "id": app_id} if isinstance(body, dict) else body
    return parse_app(whole)


async def update_app(request: web.Request, segments: list[str]) -> web.Response:
    """``PUT``/``PATCH /v2/apps/{id}``: update, create (201, PUT only) or roll back to ``{"version"}``.

    Raises:
        NotFound: PATCH of an unknown app, or a rollback to an unknown version.
    """
    control, app_id = control_of(request), app_id_of(segments)
    body, root = await read_json(request), control.root()
    existing = root.apps.get(app_id)
    if existing is None and request.method == "PATCH":
        raise NotFound(f"App '{app_id}' does not exist")
    rollback = is_rollback(body)
    app = await control.app_version(app_id, rollback) if rollback else updated_app(request, app_id, body, existing)
    plan = await commit(request, root, groupfn.with_app(root, app), version=new_version(request))
    _publish_post(request, plan.target.apps.get(app_id, app))
    if existing is None:
        return deployment_response(plan, status=201, location=f"{request.url.origin()}/v2/apps{app_id}")
    return deployment_response(plan)


async def _update_many(request: web.Request, *, must_exist: bool) -> web.Response:
    root = control_of(request).root()
    body = await read_json(request)
    items = body if isinstance(body, list) else [body]
    target = root
    for item in items:
        raw_id = item.get("id") if isinstance(item, dict) else None
        app_id = canonical(raw_id) if isinstance(raw_id, str) else ""
        existing = target.apps.get(app_id)
        if existing is None and must_exist:
            raise NotFound(f"App '{app_id}' does not exist")
        target = groupfn.with_app(target, updated_app(request, app_id, item, existing))
    plan = await commit(request, root, target, version=new_version(request))
    for app_id, app in plan.target.apps.items():
        if root.apps.get(app_id) is not app:
            _publish_post(request, app)
    return deployment_response(plan)


async def put_apps(request: web.Request, _: list[str]) -> web.Response:
    """``PUT /v2/apps``: update or create every app of the list in one deployment. Raises: InvalidDefinition."""
    return await _update_many(request, must_exist=False)


async def patch_apps(request: web.Request, _: list[str]) -> web.Response:
    """``PATCH /v2/apps``: partial updates of existing apps. Raises: NotFound, InvalidDefinition."""
    return await _update_many(request, must_exist=True)


async def delete_app(request: web.Request, segments: list[str]) -> web.Response:
    """``DELETE /v2/apps/{id}``: stop and remove the app (``force`` defaults to true). Raises: NotFound."""
    root = control_of(request).root()
    app_id = groupfn.find_app(root, app_id_of(segments)).id
    plan = await commit(
        request, root, groupfn.without_app(root, app_id), version=new_version(request), force_default=True
    )
    return deployment_response(plan)


async def restart_app(request: web.Request, segments: list[str]) -> web.Response:
    """``POST /v2/apps/{id}/restart``: a rolling restart under the upgrade strategy. Raises: NotFound."""
    root, version = control_of(request).root(), new_version(request)
    app = groupfn.find_app(root, app_id_of(segments[:-1]))
    target: RootGroup = groupfn.with_app(root, groupfn.restarted(app, version=version))
    plan = await commit(request, root, target, version=version, restart=frozenset({app.id}))
    return deployment_response(plan)


async def app_tasks(request: web.Request, segments: list[str]) -> web.StreamResponse:
    """``GET /v2/apps/{id}/tasks``."""
    return await tasks.app_tasks(request, app_id_of(segments[:-1]))


async def kill_tasks(request: web.Request, segments: list[str]) -> web.StreamResponse:
    """``DELETE /v2/apps/{id}/tasks``."""
    return await tasks.kill_app_tasks(request, app_id_of(segments[:-1]))


async def kill_task(request: web.Request, segments: list[str]) -> web.StreamResponse:
    """``DELETE /v2/apps/{id}/tasks/{taskId}``."""
    return await tasks.kill_app_task(request, app_id_of(segments[:-2]), segments[-1])
