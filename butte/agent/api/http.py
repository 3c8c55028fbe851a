"""The agent's HTTP application: ``/health``, ``/version``, ``/state``, ``/files`` and the executor API.

Each route is also served under ``/slave(1)/``, the agent's libprocess id, as Mesos does (reference §1.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from butte import MESOS_COMPAT_VERSION, __version__
from butte.agent.api.executor import ExecutorPort, add_executor_routes
from butte.agent.api.files import AgentId, add_files_routes
from butte.agent.api.monitor import MonitorSource, add_monitor_routes

StateView = Callable[[], dict[str, Any]]


def build_app(
    executor_port: ExecutorPort,
    state_view: StateView,
    work_dir: str,
    agent_id: AgentId,
    monitor: MonitorSource | None = None,
) -> web.Application:
    """The agent's aiohttp application (``/monitor/statistics`` and ``POST /api/v1`` when given a monitor)."""
    app = web.Application()
    add_executor_routes(app, executor_port)
    add_files_routes(app, work_dir, agent_id)
    if monitor is not None:
        add_monitor_routes(app, monitor)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": MESOS_COMPAT_VERSION,
                "build_date": "",
                "build_time": 0.0,
                "build_user": "",
                "butte_version": __version__,
            }
        )

    async def state(request: web.Request) -> web.Response:
        return _jsonp(request, state_view())

    for prefix in ("", "/slave(1)"):
        app.router.add_get(f"{prefix}/health", health)
        app.router.add_get(f"{prefix}/state", state)
        app.router.add_get(f"{prefix}/state.json", state)
    app.router.add_get("/version", version)
    return app


def _jsonp(request: web.Request, document: dict[str, Any]) -> web.Response:
    # Mesos's legacy endpoints wrap the JSON in ``cb(...)`` when asked with ?jsonp=cb.
    callback = request.query.get("jsonp")
    response = web.json_response(document)
    if callback:
        assert response.text is not None
        return web.Response(text=f"{callback}({response.text});", content_type="text/javascript")
    return response
