"""Read-only master endpoints: ``/master/state``, ``/state-summary``, ``/redirect``, ``/health``, ``/version``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from butte.core.resources import Resources
from butte.master import views
from butte.master.api.common import FLAGS, SERVICE, leader_address
from butte.master.model import AgentLink
from butte.master.service import MasterService


def json_response(request: web.Request, data: Any) -> web.Response:
    """JSON, or JSONP when ``?jsonp=callback`` is given (the Mesos web UI uses it)."""
    body = json.dumps(data, separators=(",", ":"))
    callback = request.query.get("jsonp")
    if callback:
        return web.Response(text=f"{callback}({body});", content_type="text/javascript")
    return web.Response(text=body, content_type="application/json")


async def state(request: web.Request) -> web.Response:
    """``GET /master/state``."""
    service: MasterService = request.app[SERVICE]
    data = views.state_json(
        service.state, flags=request.app[FLAGS], elected_time=service.elected_time, leader=service.leading
    )
    if not service.leading:  # Mesos names the leader on every master, and omits it while none is known
        data.pop("leader_info")
        if service.leader_info is not None:
            data["leader"] = service.leader_info.get("pid", "")
            data["leader_info"] = service.leader_info
    return json_response(request, data)


async def state_summary(request: web.Request) -> web.Response:
    """``GET /master/state-summary``."""
    service: MasterService = request.app[SERVICE]
    return json_response(request, views.state_summary_json(service.state))


async def frameworks(request: web.Request) -> web.Response:
    """``GET /master/frameworks``."""
    service: MasterService = request.app[SERVICE]
    data = views.state_json(service.state, flags={}, elected_time=service.elected_time)
    return json_response(
        request,
        {
            "frameworks": data["frameworks"],
            "completed_frameworks": data["completed_frameworks"],
            "unregistered_frameworks": [],
        },
    )


async def slaves(request: web.Request) -> web.Response:
    """``GET /master/slaves``."""
    service: MasterService = request.app[SERVICE]
    agents = [views.agent_json(service.state, a) for a in service.state.agents.values() if a.registered]
    return json_response(request, {"slaves": agents, "recovered_slaves": []})


async def tasks(request: web.Request) -> web.Response:
    """``GET /master/tasks``: every known task, active then completed."""
    service: MasterService = request.app[SERVICE]
    found = [views.task_json(t) for f in service.state.frameworks.values() for t in f.tasks.values()]
    found += [views.task_json(t) for f in service.state.frameworks.values() for t in f.completed_tasks]
    return json_response(request, {"tasks": found})


async def redirect(request: web.Request) -> web.Response:
    """``GET /master/redirect``: 307 to the leader, ``//host:port``; 503 when no leader is known."""
    leader = leader_address(request.app[SERVICE])
    if leader is None:
        return web.Response(status=503, text="No leader elected")
    raise web.HTTPTemporaryRedirect(location=f"//{leader}")


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 with an empty body."""
    return web.Response(status=200, body=b"")


async def version(request: web.Request) -> web.Response:
    """``GET /version``."""
    return json_response(request, views.version_json())


async def flags(request: web.Request) -> web.Response:
    """``GET /master/flags``."""
    return json_response(request, {"flags": request.app[FLAGS]})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics/snapshot``: a flat object of the master's gauges, Mesos's ``master/`` keys."""
    service: MasterService = request.app[SERVICE]
    st = service.state
    agents = [a for a in st.agents.values() if a.registered]  # not the unreachable or gone ones
    total = Resources.sum([a.total for a in agents])
    used = Resources.sum([views.agent_used(a) for a in agents])
    data: dict[str, float] = {
        "master/elected": 1.0 if service.leading else 0.0,
        "master/uptime_secs": service.now() - st.start_time,
        "master/slaves_active": float(sum(1 for a in agents if a.active)),
        "master/slaves_connected": float(sum(1 for a in agents if a.active)),
        "master/slaves_unreachable": float(sum(1 for a in st.agents.values() if a.link is AgentLink.UNREACHABLE)),
        "master/frameworks_active": float(sum(1 for f in st.frameworks.values() if f.connected)),
        "master/frameworks_connected": float(sum(1 for f in st.frameworks.values() if f.connected)),
        "master/outstanding_offers": float(len(st.offers)),
        "master/tasks_running": float(
            sum(1 for f in st.frameworks.values() for t in f.tasks.values() if t.state == "TASK_RUNNING")
        ),
    }
    for name in ("cpus", "mem", "disk", "gpus"):
        data[f"master/{name}_total"] = total.scalar(name)
        data[f"master/{name}_used"] = used.scalar(name)
    return json_response(request, data)
