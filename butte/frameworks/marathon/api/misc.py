"""Small resources: ``/v2/queue``, ``/v2/info``, ``/v2/leader``, ``/v2/eventSubscriptions``, ``/ping``,
``/metrics``.

``/v2/info`` nests three flag maps; the 0.13.0 client builds them with ``cls(**fields)`` and calls ``.items()``
on them, so they are always present objects holding only keys of its models (``marathon/models/info.py``).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from butte.core.errors import NotFound
from butte.frameworks.marathon.api.params import HTTP_PORT, control_of, json_response, tail_segments
from butte.frameworks.marathon.api.render import filter_keys, queue_item_json
from butte.frameworks.marathon.pathid import canonical
from butte.wire.marathon import MARATHON_VERSION

MARATHON_CONFIG_KEYS: Final = frozenset(
    {
        "checkpoint",
        "executor",
        "failover_timeout",
        "features",
        "framework_name",
        "ha",
        "hostname",
        "leader_proxy_connection_timeout_ms",
        "leader_proxy_read_timeout_ms",
        "local_port_min",
        "local_port_max",
        "maintenance_mode",
        "master",
        "mesos_leader_ui_url",
        "mesos_role",
        "mesos_user",
        "new_group_enforce_role",
        "webui_url",
        "reconciliation_initial_delay",
        "reconciliation_interval",
        "task_launch_timeout",
        "task_reservation_timeout",
        "marathon_store_timeout",
        "access_control_allow_origin",
        "decline_offer_duration",
        "default_network_name",
        "env_vars_prefix",
        "launch_token",
        "launch_token_refresh_interval",
        "max_instances_per_offer",
        "mesos_bridge_name",
        "mesos_heartbeat_failure_threshold",
        "mesos_heartbeat_interval",
        "min_revive_offers_interval",
        "offer_matching_timeout",
        "on_elected_prepare_timeout",
        "revive_offers_for_new_apps",
        "revive_offers_repetitions",
        "scale_apps_initial_delay",
        "scale_apps_interval",
        "store_cache",
        "task_launch_confirm_timeout",
        "task_lost_expunge_initial_delay",
        "task_lost_expunge_interval",
    }
)
ZOOKEEPER_CONFIG_KEYS: Final = frozenset(
    {
        "zk",
        "zk_future_timeout",
        "zk_hosts",
        "zk_max_versions",
        "zk_path",
        "zk_session_timeout",
        "zk_state",
        "zk_timeout",
        "zk_connection_timeout",
        "zk_compression",
        "zk_compression_threshold",
        "zk_max_node_size",
    }
)
HTTP_CONFIG_KEYS: Final = frozenset({"assets_path", "http_port", "https_port"})
BUILDREF: Final = "butte"


async def queue(request: web.Request) -> web.Response:
    """``GET /v2/queue[?embed=lastUnusedOffers]``: ``{"queue": [QueueItem]}``."""
    with_offers = "lastUnusedOffers" in request.query.getall("embed", [])
    entries = control_of(request).queue()
    return json_response({"queue": [queue_item_json(entry, with_offers=with_offers) for entry in entries]})


async def reset_delay(request: web.Request) -> web.Response:
    """``DELETE /v2/queue/{appId}/delay``: 204 (Marathon's actual code; its RAML says 200).

    Raises:
        NotFound: the path is not ``.../delay``, or nothing of the app is queued.
    """
    segments = tail_segments(request)
    if len(segments) < 2 or segments[-1] != "delay":
        raise NotFound("URI not found")
    await control_of(request).reset_delay(canonical("/" + "/".join(segments[:-1])))
    return web.Response(status=204)


def info_body(request: web.Request) -> dict[str, Any]:
    """The ``/v2/info`` document (A5)."""
    control = control_of(request)
    parts = control.info()
    http_config = {"http_port": request.app[HTTP_PORT], "https_port": 8443, "assets_path": None}
    http_config |= filter_keys(parts.get("http_config") or {}, HTTP_CONFIG_KEYS)
    return {
        "name": "marathon",
        "version": MARATHON_VERSION,
        "buildref": BUILDREF,
        "elected": control.is_leader(),
        "leader": control.leader(),
        "frameworkId": control.framework_id(),
        "marathon_config": filter_keys(parts.get("marathon_config") or {}, MARATHON_CONFIG_KEYS),
        "zookeeper_config": filter_keys(parts.get("zookeeper_config") or {}, ZOOKEEPER_CONFIG_KEYS),
        "http_config": http_config,
        "event_subscriber": None,
    }


async def info(request: web.Request) -> web.Response:
    """``GET /v2/info``."""
    return json_response(info_body(request))


async def get_leader(request: web.Request) -> web.Response:
    """``GET /v2/leader``: ``{"leader": "host:port"}``. Raises: NotFound when none is elected."""
    leader = control_of(request).leader()
    if leader is None:
        raise NotFound("There is no leader")
    return json_response({"leader": leader})


async def abdicate(request: web.Request) -> web.Response:
    """``DELETE /v2/leader``: give up leadership; another instance gets elected."""
    await control_of(request).abdicate()
    return json_response({"message": "Leadership abdicated"})


async def event_subscriptions(request: web.Request) -> web.Response:
    """HTTP callback subscriptions were removed in Marathon 1.5; as there, the resource does not exist.

    Raises:
        NotFound: always.
    """
    raise NotFound("HTTP callback event subscriptions were removed in Marathon 1.5; use /v2/events")


async def ping(request: web.Request) -> web.Response:
    """``GET /ping``: ``pong`` as text (``"pong"`` for a JSON-only client)."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/plain" not in accept and "*/*" not in accept:
        return json_response("pong")
    return web.Response(text="pong", content_type="text/plain")


def _gauge(value: float) -> dict[str, float]:
    return {"value": value}


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the Dropwizard shape of Marathon up to 1.4 with a few live gauges."""
    control = control_of(request)
    gauges = {
        "service.mesosphere.marathon.app.count": _gauge(len(control.root().apps)),
        "service.mesosphere.marathon.group.count": _gauge(len(control.root().groups)),
        "service.mesosphere.marathon.task.running.count": _gauge(
            sum(1 for i in control.instances() if i.state == "TASK_RUNNING")
        ),
        "service.mesosphere.marathon.instance.count": _gauge(len(control.instances())),
        "service.mesosphere.marathon.deployments.active": _gauge(len(control.deployments())),
        "service.mesosphere.marathon.queue.size": _gauge(len(control.queue())),
        "service.mesosphere.marathon.leadership.elected": _gauge(1 if control.is_leader() else 0),
    }
    body = {
        "version": "4.0.0",
        "gauges": gauges,
        "counters": {},
        "histograms": {},
        "meters": {},
        "timers": {},
    }
    return json_response(body)
