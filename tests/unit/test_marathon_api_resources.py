"""Tasks, groups, deployments, queue, info, leader, ping, metrics and unknown routes over a fake control."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from marathon_fake import START_S, Client, FakeControl, api_client, instance

from butte.frameworks.marathon.control import QueueEntry, UnusedOffer
from butte.wire.marathon import MARATHON_VERSION, App

SHOP = {
    "id": "/shop",
    "apps": [{"id": "web", "cmd": "x", "instances": 2}, {"id": "db", "cmd": "y"}],
    "groups": [{"id": "/shop/batch", "apps": [{"id": "/shop/batch/job", "cmd": "z"}]}],
}


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def client(control: FakeControl) -> AsyncIterator[Client]:
    async with api_client(control) as test_client:
        yield test_client


async def start_app(client: Client, control: FakeControl, app_id: str = "/web") -> None:
    assert (await client.post("/v2/apps", json={"id": app_id, "cmd": "x", "instances": 3})).status == 201
    control.finish_deployments()
    for n in (1, 2, 3):
        control.add_instance(instance(app_id, n))


async def test_get_tasks_filters_by_status(client: Client, control: FakeControl) -> None:
    await start_app(client, control)
    control.add_instance(instance("/web", 4, state="TASK_STAGING", started_at=None))
    everything = (await (await client.get("/v2/tasks")).json())["tasks"]
    running = (await (await client.get("/v2/tasks?status=running")).json())["tasks"]
    staging = (await (await client.get("/v2/tasks?status[]=staging")).json())["tasks"]
    assert (len(everything), len(running), len(staging)) == (4, 3, 1)
    assert "startedAt" not in staging[0] and "checkResult" not in staging[0]


async def test_kill_one_task_with_and_without_scale(client: Client, control: FakeControl) -> None:
    await start_app(client, control)
    killed = await client.delete("/v2/apps//web/tasks/web.task-1")
    assert killed.status == 200 and (await killed.json())["task"]["id"] == "web.task-1"
    scaled = await client.delete("/v2/apps/web/tasks/web.task-2?scale=True")
    assert set(await scaled.json()) == {"deploymentId", "version"}
    assert control.root().apps["/web"].instances == 2
    assert (await client.delete("/v2/apps/web/tasks/web.task-99")).status == 404


async def test_kill_app_tasks_by_host_and_scale_with_wipe_is_400(client: Client, control: FakeControl) -> None:
    await start_app(client, control)
    response = await client.delete("/v2/apps/web/tasks?host=host-2")
    assert [t["id"] for t in (await response.json())["tasks"]] == ["web.task-2"]
    both = await client.delete("/v2/apps/web/tasks?scale=true&wipe=true")
    assert both.status == 400 and "message" in await both.json()
    everything = await client.delete("/v2/apps/web/tasks")
    assert len((await everything.json())["tasks"]) == 2


async def test_post_tasks_delete(client: Client, control: FakeControl) -> None:
    await start_app(client, control)
    response = await client.post("/v2/tasks/delete", json={"ids": ["web.task-1", "web.task-3"]})
    assert response.status == 200
    assert sorted(t["id"] for t in (await response.json())["tasks"]) == ["web.task-1", "web.task-3"]
    assert (await client.post("/v2/tasks/delete", json={"ids": "web.task-2"})).status == 400
    scaled = await client.post("/v2/tasks/delete?scale=true", json={"ids": ["web.task-2"]})
    assert "deploymentId" in await scaled.json()


async def test_group_create_read_and_conflict(client: Client, control: FakeControl) -> None:
    response = await client.post("/v2/groups", json=SHOP)
    assert response.status == 201 and response.headers["Location"].endswith("/v2/groups/shop")
    assert set(await response.json()) == {"deploymentId", "version"}
    assert (await client.post("/v2/groups", json=SHOP)).status == 409
    root = await (await client.get("/v2/groups")).json()
    assert root["id"] == "/" and [g["id"] for g in root["groups"]] == ["/shop"]
    shop = await (await client.get("/v2/groups//shop")).json()
    assert set(shop) == {"id", "apps", "groups", "pods", "dependencies", "version"}
    assert [a["id"] for a in shop["apps"]] == ["/shop/db", "/shop/web"]
    assert [a["id"] for a in shop["groups"][0]["apps"]] == ["/shop/batch/job"]
    assert (await client.get("/v2/groups/ghost")).status == 404


async def test_group_embeds(client: Client, control: FakeControl) -> None:
    await client.post("/v2/groups", json=SHOP)
    control.add_instance(instance("/shop/web", 1))
    only_groups = await (await client.get("/v2/groups/shop?embed=group.groups")).json()
    assert only_groups["apps"] == [] and only_groups["groups"][0]["id"] == "/shop/batch"
    with_tasks = await (await client.get("/v2/groups/shop?embed=group.apps&embed=group.apps.tasks")).json()
    web = next(a for a in with_tasks["apps"] if a["id"] == "/shop/web")
    assert with_tasks["groups"] == [] and [t["id"] for t in web["tasks"]] == ["shop_web.task-1"]


async def test_group_scale_dry_run_rollback_and_delete(client: Client, control: FakeControl) -> None:
    await client.post("/v2/groups", json=SHOP)
    control.finish_deployments()
    first = control.root().version
    dry = await client.put("/v2/groups/shop?dryRun=true", json={"scaleBy": 2})
    steps = (await dry.json())["steps"]
    assert dry.status == 200 and steps and control.root().apps["/shop/web"].instances == 2
    assert {a["action"] for s in steps for a in s["actions"]} == {"ScaleApplication"}
    assert (await client.put("/v2/groups/shop", json={"scaleBy": 2})).status == 200
    assert control.root().apps["/shop/web"].instances == 4
    control.finish_deployments()
    assert first in await (await client.get("/v2/groups/shop/versions")).json()
    old = await (await client.get(f"/v2/groups/shop/versions/{first}")).json()
    assert next(a for a in old["apps"] if a["id"] == "/shop/web")["instances"] == 2
    assert (await client.put("/v2/groups/shop", json={"version": first})).status == 200
    assert control.root().apps["/shop/web"].instances == 2
    control.finish_deployments()
    assert (await client.delete("/v2/groups/shop")).status == 200
    assert not control.root().apps


async def test_group_update_replaces_its_apps(client: Client, control: FakeControl) -> None:
    await client.post("/v2/groups", json=SHOP)
    control.finish_deployments()
    response = await client.put("/v2/groups/shop", json={"apps": [{"id": "web", "cmd": "x", "instances": 1}]})
    assert response.status == 200
    assert sorted(control.root().apps) == ["/shop/batch/job", "/shop/web"]  # groups not given: kept
    invalid = await client.put("/v2/groups/shop", json={"apps": [{"id": "/elsewhere/x", "cmd": "x"}]})
    assert invalid.status == 422


async def test_deployments_list_and_cancel(client: Client, control: FakeControl) -> None:
    await client.post("/v2/apps", json={"id": "/web", "cmd": "x"})
    listed = await (await client.get("/v2/deployments")).json()
    assert len(listed) == 1
    item = listed[0]
    assert item["affectedApps"] == ["/web"] and item["currentStep"] == 1 and item["totalSteps"] == 1
    assert item["currentActions"] == [{"action": "StartApplication", "app": "/web", "readinessCheckResults": []}]
    rolled = await client.delete(f"/v2/deployments/{item['id']}")
    new_id = (await rolled.json())["deploymentId"]
    assert rolled.status == 200 and new_id != item["id"] and "/web" not in control.root().apps
    forced = await client.delete(f"/v2/deployments/{new_id}?force=true")
    assert forced.status == 202 and await forced.read() == b""
    assert (await client.delete("/v2/deployments/nope")).status == 404


def queued(app_id: str) -> QueueEntry:
    offer = UnusedOffer("o-1", "agent-1", "host-1", ("InsufficientMemory",), START_S)
    return QueueEntry(
        app=App(id=app_id, cmd="x"),
        count=2,
        delay_left_s=3.4,
        since=START_S,
        processed_offers=5,
        unused_offers=5,
        rejection_counts=(("InsufficientMemory", 5),),
        last_unused_offers=(offer,),
    )


async def test_queue_and_reset_delay(client: Client, control: FakeControl) -> None:
    control.queued.append(queued("/shop/web"))
    item = (await (await client.get("/v2/queue")).json())["queue"][0]
    assert item["count"] == 2 and item["delay"] == {"timeLeftSeconds": 3, "overdue": False}
    assert "lastUnusedOffers" not in item and "role" not in item
    embedded = (await (await client.get("/v2/queue?embed=lastUnusedOffers")).json())["queue"][0]
    assert embedded["lastUnusedOffers"][0]["reason"] == ["InsufficientMemory"]
    assert (await client.delete("/v2/queue//shop/web/delay")).status == 204
    assert (await client.delete("/v2/queue/ghost/delay")).status == 404


async def test_info_leader_ping_metrics(client: Client, control: FakeControl) -> None:
    info = await (await client.get("/v2/info")).json()
    assert info["version"] == MARATHON_VERSION and info["elected"] is True
    assert info["marathon_config"] == {"master": "127.0.0.1:5050", "ha": True}
    assert info["http_config"]["http_port"] == 8080 and info["event_subscriber"] is None
    assert await (await client.get("/v2/leader")).json() == {"leader": "127.0.0.1:8080"}
    assert (await client.delete("/v2/leader")).status == 200 and control.abdicated
    pong = await client.get("/ping")
    assert (pong.content_type, await pong.text()) == ("text/plain", "pong")
    metrics = await (await client.get("/metrics")).json()
    assert {"version", "gauges", "counters", "histograms", "meters", "timers"} <= set(metrics)
    assert metrics["gauges"]["service.mesosphere.marathon.app.count"] == {"value": 0}


async def test_no_leader_known_is_404_on_v2_leader(control: FakeControl) -> None:
    control.leader_address = None
    async with api_client(control) as client:
        response = await client.get("/v2/leader")
        assert response.status == 404 and (await response.json())["message"] == "There is no leader"


async def test_unknown_routes_and_removed_subscriptions_are_404_json(client: Client) -> None:
    for path in ("/v2/nothing", "/v2/eventSubscriptions", "/v2/appsx"):
        response = await client.get(path)
        assert response.status == 404, path
        assert "message" in await response.json()


async def test_leader_header_on_every_answer(client: Client) -> None:
    for path in ("/v2/apps", "/v2/nothing", "/ping"):
        assert (await client.get(path)).headers["X-Marathon-Leader"] == "http://127.0.0.1:8080"
