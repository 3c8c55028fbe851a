"""``/v2/apps`` over a fake MarathonControl: status codes, JSON shapes, embeds, locks and rollbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from marathon_fake import Client, FakeControl, api_client, instance

from butte.frameworks.marathon.model import HealthResult

WEB = {"id": "/shop/web", "cmd": "python3 -m http.server $PORT0", "instances": 2, "labels": {"tier": "front"}}


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def client(control: FakeControl) -> AsyncIterator[Client]:
    async with api_client(control) as test_client:
        yield test_client


async def create(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v2/apps", json=body)
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_post_answers_201_with_location_header_and_appinfo(client: Client, control: FakeControl) -> None:
    response = await client.post("/v2/apps", json=WEB)
    body = await response.json()
    assert response.status == 201
    assert response.headers["Location"].endswith("/v2/apps/shop/web")
    deployment_id = response.headers["Marathon-Deployment-Id"]
    assert body["deployments"] == [{"id": deployment_id}]
    assert (body["tasksStaged"], body["tasksRunning"], body["tasksHealthy"], body["tasksUnhealthy"]) == (0, 0, 0, 0)
    assert body["id"] == "/shop/web" and body["version"] == body["versionInfo"]["lastConfigChangeAt"]
    assert "/shop/web" in control.root().apps
    assert [e["eventType"] for e in control.published] == ["api_post_event"]
    assert control.published[0]["appDefinition"]["id"] == "/shop/web"


async def test_post_of_an_existing_id_is_409(client: Client) -> None:
    await create(client, WEB)
    response = await client.post("/v2/apps", json=WEB)
    assert response.status == 409
    assert (await response.json())["message"] == "An app with id [/shop/web] already exists."


async def test_invalid_definition_is_422_with_details(client: Client) -> None:
    response = await client.post(
        "/v2/apps", json={"id": "/shop/web", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}}
    )
    body = await response.json()
    assert response.status == 422
    assert body["message"] == "Object is not valid"
    assert body["details"] and all({"path", "errors"} == set(d) for d in body["details"])


async def test_malformed_json_is_400_and_wrong_media_type_415(client: Client) -> None:
    bad = await client.post("/v2/apps", data=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status == 400
    assert (await bad.json())["message"] == "Invalid JSON"
    wrong_type = await client.post(
        "/v2/apps", data=b"id=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert wrong_type.status == 415


async def test_wrongly_typed_field_is_400_invalid_json(client: Client) -> None:
    response = await client.post("/v2/apps", json={"id": "/a", "cmd": "x", "cpus": "lots"})
    body = await response.json()
    assert response.status == 400 and body["message"] == "Invalid JSON" and body["details"]


async def test_get_with_double_slash_embeds_tasks_counts_and_deployments(client: Client, control: FakeControl) -> None:
    created = await create(client, WEB)
    control.add_instance(instance("/shop/web", 1))
    control.add_instance(instance("/shop/web", 2, state="TASK_STAGING", started_at=None))
    response = await client.get("/v2/apps//shop/web")
    app = (await response.json())["app"]
    assert response.status == 200
    assert (app["tasksRunning"], app["tasksStaged"]) == (1, 1)
    assert app["deployments"] == created["deployments"]
    assert {task["id"] for task in app["tasks"]} == {"shop_web.task-1", "shop_web.task-2"}
    assert "startedAt" not in app["tasks"][1] or app["tasks"][1]["state"] != "TASK_STAGING"


async def test_unknown_app_is_404_with_message(client: Client) -> None:
    response = await client.get("/v2/apps/nope")
    assert response.status == 404
    assert (await response.json())["message"] == "App '/nope' does not exist"


async def test_health_counts_only_with_health_checks(client: Client, control: FakeControl) -> None:
    await create(client, {"id": "/plain", "cmd": "sleep 1"})
    await create(client, {"id": "/checked", "cmd": "sleep 1", "healthChecks": [{"protocol": "TCP"}]})
    control.add_instance(instance("/plain", 1, health=HealthResult(alive=True)))
    control.add_instance(instance("/checked", 1, health=HealthResult(alive=True)))
    control.add_instance(instance("/checked", 2, health=HealthResult(alive=False, consecutive_failures=2)))
    apps = {a["id"]: a for a in (await (await client.get("/v2/apps")).json())["apps"]}
    assert (apps["/plain"]["tasksHealthy"], apps["/plain"]["tasksUnhealthy"]) == (0, 0)
    assert (apps["/checked"]["tasksHealthy"], apps["/checked"]["tasksUnhealthy"]) == (1, 1)


async def test_list_filters_by_cmd_id_and_label(client: Client) -> None:
    await create(client, WEB)
    await create(client, {"id": "/shop/db", "cmd": "postgres", "labels": {"tier": "back"}})
    await create(client, {"id": "/batch", "cmd": "run-batch"})

    async def ids(query: str) -> list[str]:
        return [a["id"] for a in (await (await client.get(f"/v2/apps?{query}")).json())["apps"]]

    assert await ids("cmd=postgres") == ["/shop/db"]
    assert await ids("id=shop") == ["/shop/db", "/shop/web"]
    assert await ids("label=tier==front") == ["/shop/web"]
    assert await ids("label=tier in (front, back)") == ["/shop/db", "/shop/web"]
    assert await ids("label=tier!=front") == ["/batch", "/shop/db"]
    assert (await client.get("/v2/apps?label=tier%20in%20(front")).status == 400


async def test_embeds_on_the_list(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    control.add_instance(instance("/shop/web", 1))
    plain = (await (await client.get("/v2/apps")).json())["apps"][0]
    assert "tasks" not in plain and "taskStats" not in plain and "deployments" in plain
    query = "embed=app.tasks&embed=apps.taskStats&embed=apps.readiness&embed=apps.bogus"
    full = (await (await client.get(f"/v2/apps?{query}")).json())["apps"][0]
    assert [t["id"] for t in full["tasks"]] == ["shop_web.task-1"]
    assert full["taskStats"]["totalSummary"]["stats"]["counts"]["running"] == 1
    assert full["readinessCheckResults"] == []


async def test_put_updates_partially_and_creates_with_201(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    control.finish_deployments()
    response = await client.put("/v2/apps//shop/web?force=False", json={"instances": 5, "tasksRunning": 3})
    assert response.status == 200
    assert set(await response.json()) == {"deploymentId", "version"}
    assert response.headers["Marathon-Deployment-Id"] == (await response.json())["deploymentId"]
    updated = control.root().apps["/shop/web"]
    assert (updated.instances, updated.cmd) == (5, WEB["cmd"])
    created = await client.put("/v2/apps/new-app", json={"cmd": "sleep 10"})
    assert created.status == 201
    assert "/new-app" in control.root().apps


async def test_put_with_partial_update_false_replaces_the_definition(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    control.finish_deployments()
    response = await client.put("/v2/apps/shop/web?partialUpdate=false", json={"cmd": "other"})
    assert response.status == 200
    assert control.root().apps["/shop/web"].labels == {}


async def test_patch_needs_an_existing_app(client: Client, control: FakeControl) -> None:
    assert (await client.patch("/v2/apps/ghost", json={"instances": 1})).status == 404
    await create(client, WEB)
    control.finish_deployments()
    assert (await client.patch("/v2/apps/shop/web", json={"instances": 3})).status == 200
    assert control.root().apps["/shop/web"].instances == 3


async def test_lock_is_409_with_deployments_and_force_overrides(client: Client, control: FakeControl) -> None:
    created = await create(client, WEB)
    locked = await client.put("/v2/apps/shop/web", json={"instances": 3})
    body = await locked.json()
    assert locked.status == 409
    assert body["deployments"] == created["deployments"]
    assert "locked by one or more deployments" in body["message"]
    forced = await client.put("/v2/apps/shop/web?force=True", json={"instances": 3})
    assert forced.status == 200
    assert control.root().apps["/shop/web"].instances == 3


async def test_rollback_body_restores_a_stored_version(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    control.finish_deployments()
    first = control.root().apps["/shop/web"].version
    await client.put("/v2/apps/shop/web", json={"cmd": "changed"})
    control.finish_deployments()
    versions = (await (await client.get("/v2/apps/shop/web/versions")).json())["versions"]
    assert first in versions and len(versions) == 2
    stored = await (await client.get(f"/v2/apps//shop/web/versions/{first}")).json()
    assert stored["cmd"] == WEB["cmd"] and "tasksRunning" not in stored
    rolled = await client.put("/v2/apps/shop/web", json={"version": first})
    assert rolled.status == 200
    assert control.root().apps["/shop/web"].cmd == WEB["cmd"]
    unknown = await client.put("/v2/apps/shop/web", json={"version": "2001-01-01T00:00:00.000Z"})
    assert unknown.status == 404


async def test_delete_defaults_to_force(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    response = await client.delete("/v2/apps//shop/web")
    assert response.status == 200 and "deploymentId" in await response.json()
    assert "/shop/web" not in control.root().apps
    assert (await client.delete("/v2/apps/shop/web")).status == 404


async def test_restart_deploys_a_new_config_version(client: Client, control: FakeControl) -> None:
    await create(client, WEB)
    control.finish_deployments()
    before = control.root().apps["/shop/web"]
    response = await client.post("/v2/apps/shop/web/restart?force=true")
    assert response.status == 200
    after = control.root().apps["/shop/web"]
    assert after.version != before.version and control.restarts[-1] == frozenset({"/shop/web"})
    assert after.version_info is not None and after.version_info.last_config_change_at == after.version


async def test_put_and_patch_of_many_apps(client: Client, control: FakeControl) -> None:
    response = await client.put("/v2/apps", json=[{"id": "/a", "cmd": "x"}, {"id": "b", "cmd": "y"}])
    assert response.status == 200
    assert {"/a", "/b"} <= set(control.root().apps)
    assert sorted(e["appDefinition"]["id"] for e in control.published) == ["/a", "/b"]
    control.finish_deployments()
    assert (await client.patch("/v2/apps", json=[{"id": "/a", "instances": 4}])).status == 200
    assert control.root().apps["/a"].instances == 4
    assert (await client.patch("/v2/apps", json=[{"id": "/zzz", "instances": 4}])).status == 404


async def test_group_star_lists_apps_below(client: Client) -> None:
    await create(client, WEB)
    await create(client, {"id": "/other", "cmd": "x"})
    body = await (await client.get("/v2/apps/shop/*")).json()
    assert [a["id"] for a in body["*"]] == ["/shop/web"]


async def test_app_tasks_as_json_and_as_text(client: Client, control: FakeControl) -> None:
    await create(client, {"id": "/shop/web", "cmd": "x", "portDefinitions": [{"port": 10001}]})
    control.add_instance(instance("/shop/web", 1))
    tasks = (await (await client.get("/v2/apps//shop/web/tasks")).json())["tasks"]
    assert tasks[0]["servicePorts"] == [10001] and tasks[0]["appId"] == "/shop/web"
    text = await client.get("/v2/apps/shop/web/tasks", headers={"Accept": "text/plain"})
    assert text.content_type == "text/plain"
    assert await text.text() == "shop_web\t10001\thost-1:31001\t\n"
    assert (await client.get("/v2/apps/ghost/tasks")).status == 404


async def test_unknown_method_is_405_json(client: Client) -> None:
    response = await client.post("/v2/apps/shop/web")
    assert response.status == 405
    assert "message" in await response.json()
