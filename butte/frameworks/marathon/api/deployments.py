"""``/v2/deployments`` and the write path every deploying call shares.

Every change follows one pattern (Marathon's ``GroupManager.updateRoot``): compute the target root group from
the current one with the pure functions, stamp changed apps and groups with one new version, hand the target
to the framework, and answer ``{"deploymentId", "version"}`` with a ``Marathon-Deployment-Id`` header.
"""

from __future__ import annotations

from aiohttp import web

from butte.frameworks.marathon.api.params import control_of, flag, json_response
from butte.frameworks.marathon.api.render import deployment_json, deployment_result
from butte.frameworks.marathon.groups import stamp_versions
from butte.frameworks.marathon.model import DeploymentPlan, RootGroup, iso_timestamp
from butte.frameworks.marathon.service_ports import assign_service_ports

DEPLOYMENT_HEADER = "Marathon-Deployment-Id"


def new_version(request: web.Request) -> str:
    """The version a change made now gets: the shell's clock as Marathon's timestamp."""
    return iso_timestamp(control_of(request).now())


async def commit(
    request: web.Request,
    current: RootGroup,
    target: RootGroup,
    *,
    version: str,
    restart: frozenset[str] = frozenset(),
    force_default: bool = False,
) -> DeploymentPlan:
    """Stamp ``target`` with ``version`` and start its deployment; ``force`` comes from the query.

    Raises:
        Conflict: a touched app is locked by a running deployment (``LockedByDeployments``).
        ValidationError: the framework finds the target inconsistent.
    """
    with_ports = assign_service_ports(current, target)
    stamped = stamp_versions(current, with_ports, version=version)
    force = flag(request, "force", default=force_default)
    return await control_of(request).deploy(stamped, force=force, restart=restart)


def deployment_response(plan: DeploymentPlan, *, status: int = 200, location: str | None = None) -> web.Response:
    """The deployment result with Marathon's deployment header (and ``Location`` on creation)."""
    headers = {DEPLOYMENT_HEADER: plan.id}
    if location is not None:
        headers["Location"] = location
    return json_response(deployment_result(plan), status=status, headers=headers)


async def list_deployments(request: web.Request) -> web.Response:
    """``GET /v2/deployments``: a bare list of running deployments, oldest first."""
    return json_response([deployment_json(status) for status in control_of(request).deployments()])


async def cancel(request: web.Request) -> web.Response:
    """``DELETE /v2/deployments/{id}``: roll back (200, a new deployment) or, with force, stop (202).

    Raises:
        NotFound: no such running deployment.
    """
    deployment_id = request.match_info["deployment_id"]
    plan = await control_of(request).cancel_deployment(deployment_id, force=flag(request, "force"))
    if plan is None:
        return web.Response(status=202)
    return deployment_response(plan)
