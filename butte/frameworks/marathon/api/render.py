"""Marathon's output JSON: AppInfo, Task, Group, Deployment, Queue item and Info, limited to known keys.

The ``marathon`` 0.13.0 client builds its models with ``cls(**{snake_case(key): value})``, so one unknown
key breaks a whole call (``thefactory/marathon-python#235``, ``#278``). Everything written here therefore
uses only the vocabulary of the client's models: no ``checkResult``, no ``tasksStats`` (the 1.10 spelling),
no ``enforceRole``, no ``role`` on queue items.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import msgspec

from butte.frameworks.marathon.control import DeploymentStatus, QueueEntry, UnusedOffer
from butte.frameworks.marathon.model import (
    DeploymentPlan,
    HealthResult,
    Instance,
    RootGroup,
    Step,
    app_config_version,
    iso_timestamp,
)
from butte.frameworks.marathon.pathid import parent
from butte.frameworks.marathon.readinessbook import ReadinessResult
from butte.wire.marathon import App, LastTaskFailure, health_check_json

Json = dict[str, Any]

STAGED_STATES: Final = frozenset({"TASK_STAGING", ""})


def app_json(app: App) -> Json:
    """The bare app definition; the deprecated ``ports``/``uris`` only when a client set them."""
    body: Json = msgspec.to_builtins(app)
    body["healthChecks"] = [health_check_json(check) for check in app.health_checks]
    for deprecated in ("ports", "uris"):
        if body.get(deprecated) is None:
            body.pop(deprecated, None)
    return body


def _time(t: float | None) -> str | None:
    return None if t is None else iso_timestamp(t)


def health_json(instance: Instance, health: HealthResult) -> Json:
    """One ``healthCheckResults`` entry, with only the client's ``MarathonHealthCheckResult`` keys."""
    return {
        "alive": health.alive,
        "consecutiveFailures": health.consecutive_failures,
        "firstSuccess": _time(health.first_success),
        "lastSuccess": _time(health.last_success),
        "lastFailure": _time(health.last_failure),
        "lastFailureCause": health.last_failure_cause,
        "instanceId": instance.task_id,
    }


def readiness_json(result: ReadinessResult) -> Json:
    """One ``readinessCheckResults`` entry: Marathon's ``ReadinessCheckResult`` (``lastResponse`` null unless the
    check preserves it)."""
    response = result.last_response
    last = None
    if response is not None:
        last = {"status": response.status, "contentType": response.content_type, "body": response.body}
    return {"name": result.name, "taskId": result.task_id, "ready": result.ready, "lastResponse": last}


def service_ports(app: App | None) -> list[int]:
    """The app's service ports (its port definitions), which Marathon repeats on every task."""
    if app is None:
        return []
    return [definition.port for definition in app.port_definitions]


def task_json(instance: Instance, app: App | None) -> Json:
    """Marathon's Task (``v2/types/task.raml``) with the keys the client's ``MarathonTask`` knows."""
    body: Json = {
        "id": instance.task_id,
        "appId": instance.app_id,
        "host": instance.host,
        "slaveId": instance.agent_id,
        "ports": list(instance.ports),
        "servicePorts": service_ports(app),
        "ipAddresses": [],
        "state": instance.state or "TASK_STAGING",
        "stagedAt": iso_timestamp(instance.staged_at),
        "version": instance.version,
        "localVolumes": [],
    }
    if instance.started_at is not None:
        body["startedAt"] = iso_timestamp(instance.started_at)
    if instance.health is not None:
        body["healthCheckResults"] = [health_json(instance, instance.health)]
    for key in ("region", "zone"):
        if key in instance.attributes:
            body[key] = instance.attributes[key]
    return body


def is_staged(instance: Instance) -> bool:
    """Marathon counts a task as staged while Mesos has not reported a state or reports TASK_STAGING."""
    return instance.state in STAGED_STATES


def counts(app: App, instances: Sequence[Instance]) -> dict[str, int]:
    """``tasksStaged/Running/Healthy/Unhealthy``; with no health checks both health counts stay 0."""
    checked = bool(app.health_checks)
    return {
        "staged": sum(1 for i in instances if is_staged(i)),
        "running": sum(1 for i in instances if i.state == "TASK_RUNNING"),
        "healthy": sum(1 for i in instances if checked and i.healthy is True),
        "unhealthy": sum(1 for i in instances if checked and i.healthy is False),
    }


def _stats(app: App, instances: Sequence[Instance], now: float) -> Json:
    numbers = counts(app, instances)
    body: Json = {"counts": numbers}
    lifetimes = [now - i.started_at for i in instances if i.started_at is not None]
    if lifetimes:
        body["lifeTime"] = {
            "averageSeconds": statistics.fmean(lifetimes),
            "medianSeconds": statistics.median(lifetimes),
        }
    return {"stats": body}


def task_stats(app: App, instances: Sequence[Instance], now: float) -> Json:
    """``taskStats`` (Marathon up to 1.6's spelling): only the non-empty categories, as Marathon writes them."""
    scaled_at = app.version_info.last_scaling_at if app.version_info is not None else (app.version or "")
    config = app_config_version(app)
    groups = {
        "startedAfterLastScaling": [i for i in instances if i.started_at is not None and i.version >= scaled_at],
        "withLatestConfig": [i for i in instances if i.config_version == config],
        "withOutdatedConfig": [i for i in instances if i.config_version != config],
        "totalSummary": list(instances),
    }
    return {name: _stats(app, members, now) for name, members in groups.items() if members}


def app_info(
    app: App,
    instances: Sequence[Instance],
    *,
    embed: Collection[str],
    deployment_ids: Sequence[str],
    last_failure: LastTaskFailure | None = None,
    now: float = 0.0,
    readiness: Sequence[ReadinessResult] = (),
) -> Json:
    """AppInfo: the app plus counts and deployments, and ``tasks``/``lastTaskFailure``/``taskStats``/
    ``readinessCheckResults`` when embedded (``embed`` holds stripped names such as ``tasks``)."""
    body = app_json(app)
    numbers = counts(app, instances)
    body.update(
        tasksStaged=numbers["staged"],
        tasksRunning=numbers["running"],
        tasksHealthy=numbers["healthy"],
        tasksUnhealthy=numbers["unhealthy"],
        deployments=[{"id": deployment_id} for deployment_id in deployment_ids],
    )
    if "tasks" in embed:
        body["tasks"] = [task_json(instance, app) for instance in instances]
    if "lastTaskFailure" in embed and last_failure is not None:
        body["lastTaskFailure"] = msgspec.to_builtins(last_failure)
    if "taskStats" in embed:
        body["taskStats"] = task_stats(app, instances, now)
    if "readiness" in embed:
        body["readinessCheckResults"] = [readiness_json(r) for r in readiness if r.app_id == app.id]
    return body


def steps_json(steps: Sequence[Step]) -> list[Json]:
    """Plan steps as Marathon writes them: ``[{"actions": [{"action", "app"}]}]``."""
    return [{"actions": [{"action": a.kind, "app": a.app_id} for a in step.actions]} for step in steps]


def deployment_json(status: DeploymentStatus) -> Json:
    """A ``GET /v2/deployments`` item (``currentStep`` is 1-based; its actions carry readiness results)."""
    plan = status.plan
    index = status.current_step - 1
    current = plan.steps[index].actions if 0 <= index < len(plan.steps) else ()
    actions = [
        {
            "action": a.kind,
            "app": a.app_id,
            "readinessCheckResults": [readiness_json(r) for r in status.readiness if r.app_id == a.app_id],
        }
        for a in current
    ]
    return {
        "id": plan.id,
        "version": plan.version,
        "affectedApps": list(plan.affected_apps),
        "affectedPods": [],
        "steps": steps_json(plan.steps),
        "currentActions": actions,
        "currentStep": status.current_step,
        "totalSteps": len(plan.steps),
    }


def deployment_result(plan: DeploymentPlan) -> Json:
    """The answer of every deploying call."""
    return {"deploymentId": plan.id, "version": plan.version}


def _unused_offer_json(offer: UnusedOffer) -> Json:
    return {
        "offer": {"id": offer.offer_id, "agentId": offer.agent_id, "hostname": offer.hostname},
        "reason": list(offer.reasons),
        "timestamp": iso_timestamp(offer.timestamp),
    }


def queue_item_json(entry: QueueEntry, *, with_offers: bool) -> Json:
    """A queue item; never ``role`` (1.9+), which the client's ``MarathonQueueItem`` rejects."""
    body: Json = {
        "app": app_json(entry.app),
        "count": entry.count,
        "delay": {"timeLeftSeconds": max(0, round(entry.delay_left_s)), "overdue": entry.delay_left_s <= 0},
        "since": iso_timestamp(entry.since),
        "processedOffersSummary": {
            "processedOffersCount": entry.processed_offers,
            "unusedOffersCount": entry.unused_offers,
            "rejectSummaryLastOffers": [
                {"reason": reason, "declined": count, "processed": entry.processed_offers}
                for reason, count in entry.rejection_counts
            ],
        },
    }
    if with_offers:
        body["lastUnusedOffers"] = [_unused_offer_json(offer) for offer in entry.last_unused_offers]
    return body


def group_meta(root: RootGroup, group_id: str) -> Json:
    """The group's own keys, before its apps and children are filled in."""
    meta = root.groups[group_id]
    return {"id": group_id, "dependencies": list(meta.dependencies), "version": meta.version or root.version}


def filter_keys(values: Mapping[str, Any], allowed: Collection[str]) -> Json:
    """Only the keys the client's model accepts (``/v2/info`` nested objects)."""
    return {key: value for key, value in values.items() if key in allowed}


def group_json(root: RootGroup, group_id: str, *, groups: bool, apps: Json | None) -> Json:
    """A GroupInfo: ``id, apps, groups, pods, dependencies, version`` (never ``enforceRole``).

    ``apps`` maps app ids to their rendered JSON (None: not embedded); child groups recurse with the same
    embeds, as Marathon's ``GroupInfoService`` does.
    """
    body = group_meta(root, group_id)
    children = sorted(g for g in root.groups if g != group_id and parent(g) == group_id)
    body["apps"] = [] if apps is None else [apps[a] for a in sorted(apps) if parent(a) == group_id]
    body["groups"] = [group_json(root, child, groups=groups, apps=apps) for child in children] if groups else []
    body["pods"] = []
    return body
