"""The master's aiohttp application: every route, also under the ``/master`` prefix as libprocess serves it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from butte.master.api import agent_link, operator, readonly, scheduler
from butte.master.api.common import FLAGS, SERVICE, leader_address
from butte.master.service import MasterService

_POST_ONLY = {
    "/api/v1/scheduler": scheduler.handle,
    "/api/v1/agent": agent_link.handle,
    "/api/v1": operator.handle,
    # libprocess routes by longest prefix, and pymesos's operator client posts here.
    "/api/v1/operator": operator.handle,
}

_GETS = {
    "/state": readonly.state,
    "/state.json": readonly.state,
    "/state-summary": readonly.state_summary,
    "/frameworks": readonly.frameworks,
    "/slaves": readonly.slaves,
    "/tasks": readonly.tasks,
    "/redirect": readonly.redirect,
    "/health": readonly.health,
    "/flags": readonly.flags,
}


@web.middleware
async def _leader_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Non-leaders send API calls to the leader: 307 ``//host:port<path>``, or 503 when none is known."""
    service = request.app[SERVICE]
    if service.leading or request.path.removeprefix("/master") not in _POST_ONLY:
        return await handler(request)
    leader = leader_address(service)
    if leader is None:
        return web.Response(status=503, text="No leader elected")
    return web.Response(status=307, headers={"Location": f"//{leader}{request.path_qs}"})


async def _method_not_allowed(request: web.Request) -> web.Response:
    return web.Response(status=405, headers={"Allow": "POST"}, text="Expecting a 'POST' request")


def build_app(service: MasterService, flags: dict[str, str]) -> web.Application:
    """Routes for the scheduler, agent and read-only APIs."""
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_leader_only])
    app[SERVICE] = service
    app[FLAGS] = flags
    for path, handler in _POST_ONLY.items():
        for prefix in ("", "/master"):
            app.router.add_post(prefix + path, handler)
            app.router.add_route("*", prefix + path, _method_not_allowed)
    for path, getter in _GETS.items():
        for prefix in ("", "/master"):
            app.router.add_get(prefix + path, getter)
    app.router.add_get("/version", readonly.version)
    app.router.add_get("/metrics/snapshot", readonly.metrics)
    return app
