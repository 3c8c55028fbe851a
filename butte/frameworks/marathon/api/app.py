"""The Marathon v2 aiohttp application: routes, the error middleware and the leader proxy.

Errors are mapped once, here. Marathon's bodies (``MarathonExceptionMapper.scala``) are JSON with a
``message``, plus ``details`` for validation (422) and malformed JSON (400), and ``deployments`` for a lock
(409). Any other exception is logged and answered 500: a handler error never takes the server down.

HA follows ``LeaderProxyFilter.scala``: a standby forwards every request to the leader and marks it with
``X-Marathon-Via``; ``/v2/events`` is redirected (302) instead; with no leader the answer is 502. The leader
stamps every answer with ``X-Marathon-Leader``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from butte.core.errors import ButteError, ValidationError
from butte.edge import status_for
from butte.frameworks.marathon.api import apps, deployments, events, groups, misc, tasks
from butte.frameworks.marathon.api.params import ADVERTISED, CONTROL, HTTP_PORT, MethodNotAllowed, json_response
from butte.frameworks.marathon.control import LockedByDeployments, MarathonControl
from butte.frameworks.marathon.validation import InvalidDefinition, InvalidJson

log = logging.getLogger(__name__)

SESSION: Final[web.AppKey[aiohttp.ClientSession]] = web.AppKey("marathon_proxy_session")
PROXY_TIMEOUT: Final = aiohttp.ClientTimeout(total=60, sock_connect=5)

# RFC 7230 §6.1 hop-by-hop headers, plus what aiohttp recomputes for the forwarded body.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
_STATUS: Final[Mapping[type[ButteError], int]] = {MethodNotAllowed: 405}
# Marathon answers these on any instance: a standby can still say who leads and that it is alive.
_LOCAL_GETS: Final = frozenset({"/ping", "/metrics", "/v2/leader"})


def make_app(control: MarathonControl, *, http_port: int, advertised: str) -> web.Application:
    """The Marathon REST API over ``control``; ``advertised`` is this instance's ``host:port``."""
    app = web.Application(middlewares=[error_middleware, leader_middleware], client_max_size=16 * 1024 * 1024)
    app[CONTROL] = control
    app[ADVERTISED] = advertised
    app[HTTP_PORT] = http_port
    app.cleanup_ctx.append(_proxy_session)
    app.on_response_prepare.append(_stamp_leader)
    add_routes(app.router)
    return app


def add_routes(router: web.UrlDispatcher) -> None:
    """Every Marathon route; paths holding ids are parsed by their resource's ``dispatch``."""
    router.add_route("*", "/v2/apps{tail:.*}", apps.dispatch)
    router.add_route("*", "/v2/groups{tail:.*}", groups.dispatch)
    router.add_get("/v2/tasks", tasks.list_all)
    router.add_post("/v2/tasks/delete", tasks.delete_many)
    router.add_get("/v2/deployments", deployments.list_deployments)
    router.add_delete("/v2/deployments/{deployment_id}", deployments.cancel)
    router.add_get("/v2/queue", misc.queue)
    router.add_delete("/v2/queue{tail:.*}", misc.reset_delay)
    router.add_get("/v2/info", misc.info)
    router.add_get("/v2/leader", misc.get_leader)
    router.add_delete("/v2/leader", misc.abdicate)
    router.add_route("*", "/v2/eventSubscriptions", misc.event_subscriptions)
    router.add_get("/v2/events", events.stream)
    router.add_get("/ping", misc.ping)
    router.add_get("/metrics", misc.metrics)


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """Marathon's error body: ``{"message": ...}`` plus any extra keys."""
    return json_response({"message": message, **extra}, status=status)


def butte_error_response(exc: ButteError) -> web.Response:
    """The Marathon answer for one typed error."""
    if isinstance(exc, InvalidDefinition | InvalidJson):
        return json_response(exc.response_body(), status=422 if isinstance(exc, InvalidDefinition) else 400)
    if isinstance(exc, LockedByDeployments):
        return json_error(409, str(exc), deployments=[{"id": d} for d in exc.deployment_ids])
    if isinstance(exc, ValidationError):
        return json_error(400, str(exc))
    return json_error(status_for(exc, _STATUS), str(exc))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Typed errors, unknown routes and crashes become Marathon's JSON error bodies."""
    try:
        return await handler(request)
    except ButteError as exc:
        return butte_error_response(exc)
    except web.HTTPNotFound:
        return json_error(404, "URI not found")
    except web.HTTPMethodNotAllowed as exc:
        return json_error(405, "HTTP 405 Method Not Allowed", allowed=sorted(exc.allowed_methods))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return json_error(exc.status, exc.reason)
        raise
    except Exception:  # the server must outlive any handler bug
        log.exception("marathon api: %s %s failed", request.method, request.path)
        return json_error(500, "An unexpected server error occurred")


@web.middleware
async def leader_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve on the leader; elsewhere redirect events, proxy the rest, or 502 with no leader."""
    control = request.app[CONTROL]
    if control.is_leader() or (request.method == "GET" and request.path in _LOCAL_GETS):
        return await handler(request)
    leader = control.leader()
    if leader is None or leader == request.app[ADVERTISED]:
        return json_error(502, "Could not determine the current leader")
    if request.path == "/v2/events":
        raise web.HTTPFound(location=f"http://{leader}{request.raw_path}")
    if "X-Marathon-Via" in request.headers:
        # Two standbys pointing at each other would forward forever; Marathon refuses the loop.
        return json_error(502, "Detected proxying loop")
    return await proxy_to(request, leader)


async def proxy_to(request: web.Request, leader: str) -> web.Response:
    """Forward ``request`` to the leader unchanged (method, raw path, query, body, end-to-end headers)."""
    via = f"1.1 {request.app[ADVERTISED]}"
    headers = {**_end_to_end(request.headers), "X-Marathon-Via": via}
    url = URL(f"http://{leader}{request.raw_path}", encoded=True)
    body = await request.read()
    try:
        async with request.app[SESSION].request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            answer = web.Response(status=upstream.status, body=payload, headers=_end_to_end(upstream.headers))
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("marathon api: proxy to leader %s failed: %s", leader, exc)
        return json_error(502, f"Could not reach the current leader {leader}")
    answer.headers["X-Marathon-Via"] = via
    return answer


def _end_to_end(headers: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key.lower() not in _HOP_BY_HOP}


async def _stamp_leader(request: web.Request, response: web.StreamResponse) -> None:
    control = request.app[CONTROL]
    if control.is_leader() and "X-Marathon-Leader" not in response.headers:
        response.headers["X-Marathon-Leader"] = f"http://{request.app[ADVERTISED]}"


async def _proxy_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=PROXY_TIMEOUT, auto_decompress=True) as session:
        app[SESSION] = session
        yield
