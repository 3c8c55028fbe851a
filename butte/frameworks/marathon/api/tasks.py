"""Task reads and kills: ``/v2/tasks``, ``/v2/tasks/delete`` and ``/v2/apps/{id}/tasks[/{taskId}]``.

A kill without ``scale`` lets Marathon launch replacements; with ``scale`` it lowers the app's instances by as
many, which is a deployment. ``scale`` and ``wipe`` together are refused with 400 (``TasksResource``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiohttp import web

from butte.core.errors import NotFound, ValidationError
from butte.frameworks.marathon import groups as groupfn
from butte.frameworks.marathon.api.deployments import deployment_response
from butte.frameworks.marathon.api.params import control_of, flag, json_response, read_json
from butte.frameworks.marathon.api.render import Json, service_ports, task_json
from butte.frameworks.marathon.control import KillResult
from butte.frameworks.marathon.model import Instance, RootGroup
from butte.frameworks.marathon.pathid import safe_id

# ``GET /v2/tasks?status=`` values and the Mesos states they select (``TasksResource.scala``).
STATUS_STATES = {"running": frozenset({"TASK_RUNNING"}), "staging": frozenset({"TASK_STAGING", ""})}


def wants_text(request: web.Request) -> bool:
    """Jersey picks JSON first; plain text only when the client asks for it and not for JSON."""
    accept = request.headers.get("Accept", "")
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "text/plain" in kinds and "application/json" not in kinds


def tasks_text(root: RootGroup, instances: Sequence[Instance]) -> str:
    """Marathon's text form: per app and service port, ``app<TAB>servicePort<TAB>host:port<TAB>...``."""
    lines: list[str] = []
    for app_id in sorted({i.app_id for i in instances}):
        mine = [i for i in instances if i.app_id == app_id]
        ports = service_ports(root.apps.get(app_id))
        if not ports:
            lines.append(f"{safe_id(app_id)}\t \t" + "".join(f"{i.host}\t" for i in mine))
        for index, port in enumerate(ports):
            hosts = "".join(f"{i.host}:{i.ports[index]}\t" for i in mine if index < len(i.ports))
            lines.append(f"{safe_id(app_id)}\t{port}\t{hosts}")
    return "".join(f"{line}\n" for line in lines)


def tasks_response(request: web.Request, instances: Sequence[Instance]) -> web.Response:
    """``{"tasks": [...]}``, or the text form for ``Accept: text/plain``."""
    root = control_of(request).root()
    if wants_text(request):
        return web.Response(text=tasks_text(root, instances), content_type="text/plain")
    return json_response({"tasks": [task_json(i, root.apps.get(i.app_id)) for i in instances]})


async def list_all(request: web.Request) -> web.Response:
    """``GET /v2/tasks``: every task, or those in ``status``/``status[]`` (``running``, ``staging``)."""
    wanted = request.query.getall("status", []) + request.query.getall("status[]", [])
    states = frozenset().union(*(STATUS_STATES.get(value.lower(), frozenset()) for value in wanted))
    instances = control_of(request).instances()
    if wanted:
        instances = [i for i in instances if i.state in states]
    return tasks_response(request, instances)


async def app_tasks(request: web.Request, app_id: str) -> web.Response:
    """``GET /v2/apps/{id}/tasks``. Raises: NotFound for an unknown app."""
    control = control_of(request)
    groupfn.find_app(control.root(), app_id)
    return tasks_response(request, control.instances(app_id))


def kill_flags(request: web.Request) -> tuple[bool, bool, bool]:
    """(scale, wipe, force) of a kill request.

    Raises:
        ValidationError: ``scale`` and ``wipe`` together, which Marathon refuses.
    """
    scale, wipe = flag(request, "scale"), flag(request, "wipe")
    if scale and wipe:
        raise ValidationError("", "You cannot use scale and wipe at the same time.")
    return scale, wipe, flag(request, "force")


async def kill(request: web.Request, task_ids: Iterable[str]) -> KillResult:
    """Ask the framework to kill; raises what :meth:`MarathonControl.kill` raises."""
    scale, wipe, force = kill_flags(request)
    return await control_of(request).kill(list(task_ids), scale=scale, wipe=wipe, force=force)


def killed_json(request: web.Request, result: KillResult) -> list[Json]:
    root = control_of(request).root()
    return [task_json(i, root.apps.get(i.app_id)) for i in result.killed]


async def kill_app_tasks(request: web.Request, app_id: str) -> web.Response:
    """``DELETE /v2/apps/{id}/tasks?host=``: kill the app's tasks (on one host, or ``*``/absent: all).

    Raises:
        NotFound: unknown app.
        ValidationError: ``scale`` with ``wipe``.
    """
    control = control_of(request)
    groupfn.find_app(control.root(), app_id)
    host = request.query.get("host", "*")
    chosen = [i.task_id for i in control.instances(app_id) if host in ("*", "") or i.host == host]
    result = await kill(request, chosen)
    if result.deployment is not None:
        return deployment_response(result.deployment)
    return json_response({"tasks": killed_json(request, result)})


async def kill_app_task(request: web.Request, app_id: str, task_id: str) -> web.Response:
    """``DELETE /v2/apps/{id}/tasks/{taskId}``: ``{"task": Task}`` or, with ``scale``, a deployment.

    Raises:
        NotFound: unknown app, or a task that is not one of the app's.
    """
    control = control_of(request)
    groupfn.find_app(control.root(), app_id)
    if all(i.task_id != task_id for i in control.instances(app_id)):
        raise NotFound(f"Task '{task_id}' does not exist")
    result = await kill(request, [task_id])
    if result.deployment is not None:
        return deployment_response(result.deployment)
    killed = killed_json(request, result)
    if not killed:
        raise NotFound(f"Task '{task_id}' does not exist")
    return json_response({"task": killed[0]})


async def delete_many(request: web.Request) -> web.Response:
    """``POST /v2/tasks/delete`` with ``{"ids": [...]}``: ``{"tasks": [...]}`` or a deployment.

    Raises:
        ValidationError: the body is not ``{"ids": [string...]}``.
        NotFound: an id that is not a known task.
    """
    body = await read_json(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(task_id, str) for task_id in ids):
        raise ValidationError("ids", "expected a list of task ids")
    result = await kill(request, ids)
    if result.deployment is not None:
        return deployment_response(result.deployment)
    return json_response({"tasks": killed_json(request, result)})
