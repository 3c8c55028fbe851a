"""Marathon's event payloads as JSON: the core publishes values, subscribers get Marathon's shapes.

Deployment events carry the *heavy* plan (``original`` and ``target`` groups, ``steps``, ``id``,
``version``): the ``marathon`` 0.13.0 client's ``event_stream()`` fails on the light form that Marathon 1.7+
sends by default, so Butte sends the form every client understands.
"""

from __future__ import annotations

from typing import Any

from butte.frameworks.marathon.api.render import app_json, group_json, steps_json
from butte.frameworks.marathon.model import ROOT, DeploymentPlan, RootGroup, Step


def render_event(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with core values (plans, steps) replaced by their JSON."""
    rendered = dict(fields)
    plan = rendered.get("plan")
    if isinstance(plan, DeploymentPlan):
        rendered["plan"] = plan_json(plan)
    step = rendered.get("currentStep")
    if isinstance(step, Step):
        rendered["currentStep"] = steps_json([step])[0]
    return rendered


def plan_json(plan: DeploymentPlan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "version": plan.version,
        "original": _root_json(plan.original),
        "target": _root_json(plan.target),
        "steps": steps_json(plan.steps),
    }


def _root_json(root: RootGroup) -> dict[str, Any]:
    apps = {app_id: app_json(app) for app_id, app in root.apps.items()}
    return group_json(root, ROOT, groups=True, apps=apps)
