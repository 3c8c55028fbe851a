"""Query parsing of the Marathon API: booleans, embeds, label selectors; and the pure renderers' counting rules."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from marathon_fake import instance
from multidict import MultiDict

from butte.core.errors import ValidationError
from butte.frameworks.marathon.api.params import app_embeds, flag, group_embeds, label_selector
from butte.frameworks.marathon.api.render import counts, deployment_json, task_json
from butte.frameworks.marathon.control import DeploymentStatus
from butte.frameworks.marathon.model import Action, DeploymentPlan, HealthResult, RootGroup, Step
from butte.wire.marathon import App, HealthCheck


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("force=True", True),
        ("force=true", True),
        ("force=1", True),
        ("force=False", False),
        ("", False),
        ("force=", False),
    ],
)
def test_flag_reads_requests_style_booleans(query: str, expected: bool) -> None:
    assert flag(make_mocked_request("GET", f"/v2/apps?{query}"), "force") is expected


def test_flag_default_and_garbage() -> None:
    assert flag(make_mocked_request("DELETE", "/v2/apps/x"), "force", default=True) is True
    with pytest.raises(ValidationError):
        flag(make_mocked_request("GET", "/v2/apps?force=maybe"), "force")


def test_embed_prefixes_are_stripped_and_failures_expands() -> None:
    assert app_embeds(["app.tasks", "apps.counts", "group.apps.taskStats", "bogus"]) == {
        "tasks",
        "counts",
        "taskStats",
        "deployments",
    }
    assert app_embeds(["apps.failures"]) == {"failures", "tasks", "lastTaskFailure", "deployments"}


def test_group_embeds_default_to_groups_and_apps() -> None:
    assert group_embeds(MultiDict()) == (True, True, frozenset())
    assert group_embeds(MultiDict([("embed", "group.groups")])) == (True, False, frozenset())
    assert group_embeds(MultiDict([("embed", "group.apps.tasks")])) == (
        False,
        True,
        frozenset({"tasks", "deployments"}),
    )


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("tier", {"tier": "x"}, True),
        ("tier", {}, False),
        ("tier==front", {"tier": "front"}, True),
        ("tier==front", {"tier": "back"}, False),
        ("tier!=front", {"tier": "back"}, True),
        ("tier!=front", {}, True),
        ("tier in (front, back)", {"tier": "back"}, True),
        ("tier notin (front,back)", {"tier": "mid"}, True),
        ("tier notin (front,back)", {"tier": "front"}, False),
        ("tier==front, owner", {"tier": "front"}, False),
        ("tier==front,owner", {"tier": "front", "owner": "me"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert label_selector(selector)(labels) is expected


@pytest.mark.parametrize("selector", ["tier in (front", "==x", "a b"])
def test_bad_label_selectors_are_refused(selector: str) -> None:
    with pytest.raises(ValidationError):
        label_selector(selector)


keys = st.text(alphabet="abcdefgh-_.", min_size=1, max_size=6)
values = st.text(alphabet="xyz0123", min_size=1, max_size=4)


@given(st.dictionaries(keys, values, max_size=4), keys, values)
def test_equality_and_inequality_selectors_are_complements(labels: dict[str, str], key: str, value: str) -> None:
    assert label_selector(f"{key}=={value}")(labels) != label_selector(f"{key}!={value}")(labels)
    assert label_selector(key)(labels) == (key in labels)


@given(st.lists(st.sampled_from(["TASK_STAGING", "TASK_RUNNING", "TASK_KILLING", ""]), max_size=8), st.booleans())
def test_counts_never_exceed_the_instances(states: list[str], checked: bool) -> None:
    app = App(id="/a", cmd="x", health_checks=[HealthCheck()] if checked else [])
    instances = [instance("/a", n, state=s, health=HealthResult(alive=n % 2 == 0)) for n, s in enumerate(states)]
    numbers = counts(app, instances)
    assert numbers["staged"] + numbers["running"] <= len(instances)
    assert numbers["healthy"] + numbers["unhealthy"] == (len(instances) if checked else 0)


def test_task_json_keeps_to_the_client_keys() -> None:
    body = task_json(instance("/a", 1, health=HealthResult(alive=True, first_success=1.0)), None)
    allowed = {
        "appId", "healthCheckResults", "host", "id", "ports", "servicePorts", "slaveId", "stagedAt", "startedAt",
        "version", "ipAddresses", "state", "localVolumes", "region", "zone", "role",
    }  # fmt: skip
    assert set(body) <= allowed
    assert body["healthCheckResults"][0]["firstSuccess"] == "1970-01-01T00:00:01.000Z"


def test_deployment_current_actions_follow_the_current_step() -> None:
    steps = (Step((Action("StopApplication", "/old"),)), Step((Action("StartApplication", "/new"),)))
    plan = DeploymentPlan(id="d", version="v", original=RootGroup(), target=RootGroup(), steps=steps)
    body = deployment_json(DeploymentStatus(plan=plan, current_step=2))
    assert body["currentActions"] == [{"action": "StartApplication", "app": "/new", "readinessCheckResults": []}]
    assert (body["totalSteps"], body["affectedApps"]) == (2, ["/new", "/old"])
