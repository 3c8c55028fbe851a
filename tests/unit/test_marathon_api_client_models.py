"""Every JSON shape the API answers goes through the real ``marathon`` 0.13.0 client's models.

The client's models take ``cls(**{snake_case(key): value})``: one key they do not know raises ``TypeError``.
0.13.0 still imports ``collections.Iterable`` (removed in Python 3.10), so the alias is put back before import.
"""

from __future__ import annotations

import collections
import collections.abc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from marathon_fake import START_S, Client, FakeControl, api_client, instance

from butte.frameworks.marathon.control import QueueEntry, UnusedOffer
from butte.frameworks.marathon.model import HealthResult
from butte.wire.marathon import App, LastTaskFailure

if not hasattr(collections, "Iterable"):
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

models = pytest.importorskip("marathon.models")

RICH_APP: dict[str, Any] = {
    "id": "/shop/web",
    "cmd": "serve",
    "instances": 2,
    "env": {"MODE": "prod", "TOKEN": {"secret": "tok"}},
    "secrets": {"tok": {"source": "/vault/tok"}},
    "labels": {"tier": "front"},
    "constraints": [["hostname", "UNIQUE"]],
    "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}],
    "readinessChecks": [{"name": "ready", "path": "/ready", "portName": "http"}],
    "portDefinitions": [{"port": 10001, "name": "http"}],
    "container": {
        "type": "DOCKER",
        "docker": {"image": "nginx"},
        "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RW"}],
    },
    "fetch": [{"uri": "http://example.com/app.tgz"}],
    "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
    "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120},
    "dependencies": ["/shop/db"],
}


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def client(control: FakeControl) -> AsyncIterator[Client]:
    async with api_client(control) as test_client:
        yield test_client


async def populate(client: Client, control: FakeControl) -> None:
    group = {"id": "/shop", "apps": [{"id": "db", "cmd": "postgres"}, RICH_APP]}
    assert (await client.post("/v2/groups", json=group)).status == 201, await (await client.get("/v2/groups")).text()
    await client.post("/v2/apps", json={"id": "/plain", "args": ["sleep", "9"], "unreachableStrategy": "disabled"})
    health = HealthResult(
        alive=False, consecutive_failures=1, first_success=START_S, last_failure=START_S + 9, last_failure_cause="503"
    )
    control.add_instance(instance("/shop/web", 1, health=health, attributes={"zone": "a"}))
    control.add_instance(instance("/shop/web", 2, state="TASK_STAGING", started_at=None))
    control.failures["/shop/web"] = LastTaskFailure(
        app_id="/shop/web",
        host="host-9",
        message="exit 1",
        state="TASK_FAILED",
        task_id="shop_web.task-9",
        timestamp="2023-11-14T22:13:29.000Z",
        version="2023-11-14T22:13:20.000Z",
        slave_id="agent-9",
    )
    offer = UnusedOffer("o-1", "agent-1", "host-1", ("InsufficientCpus",), START_S)
    control.queued.append(
        QueueEntry(App(id="/plain", cmd="x"), 1, 0.0, START_S, 3, 3, (("InsufficientCpus", 3),), (offer,))
    )


async def get_json(client: Client, path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_apps_parse_with_every_embed(client: Client, control: FakeControl) -> None:
    await populate(client, control)
    embeds = "&".join(
        f"embed=apps.{e}"
        for e in ("tasks", "counts", "deployments", "readiness", "lastTaskFailure", "failures", "taskStats")
    )
    for body in (await get_json(client, f"/v2/apps?{embeds}"))["apps"]:
        app = models.MarathonApp.from_json(body)
        assert app.id == body["id"]
    single = await get_json(client, "/v2/apps//shop/web?embed=app.taskStats&embed=app.readiness")
    app = models.MarathonApp.from_json(single["app"])
    assert app.last_task_failure.task_id == "shop_web.task-9"
    assert app.tasks[0].health_check_results[0].alive is False
    assert app.task_stats.total_summary.stats.counts.staged == 1
    star = await get_json(client, "/v2/apps/shop/*")
    assert all(models.MarathonApp.from_json(body) for body in star["*"])
    version = (await get_json(client, "/v2/apps/shop/web/versions"))["versions"][0]
    assert (
        models.MarathonApp.from_json(await get_json(client, f"/v2/apps/shop/web/versions/{version}")).id == "/shop/web"
    )


async def test_post_answer_parses(client: Client) -> None:
    response = await client.post("/v2/apps", json=RICH_APP | {"id": "/solo", "dependencies": []})
    assert response.status == 201
    assert models.MarathonApp.from_json(await response.json()).id == "/solo"


async def test_tasks_parse(client: Client, control: FakeControl) -> None:
    await populate(client, control)
    tasks = (await get_json(client, "/v2/tasks"))["tasks"]
    assert [models.MarathonTask.from_json(t).app_id for t in tasks] == ["/shop/web", "/shop/web"]


async def test_groups_parse_with_embeds(client: Client, control: FakeControl) -> None:
    await populate(client, control)
    for query in ("", "?embed=group.groups&embed=group.apps&embed=group.apps.tasks&embed=group.apps.counts"):
        root = models.MarathonGroup.from_json(await get_json(client, f"/v2/groups{query}"))
        assert [g.id for g in root.groups] == ["/shop"]
    shop = models.MarathonGroup.from_json(await get_json(client, "/v2/groups/shop"))
    assert sorted(a.id for a in shop.apps) == ["/shop/db", "/shop/web"]


async def test_deployments_queue_and_info_parse(client: Client, control: FakeControl) -> None:
    await populate(client, control)
    deployments = [models.MarathonDeployment.from_json(d) for d in await get_json(client, "/v2/deployments")]
    assert deployments and all(d.current_actions for d in deployments)
    queue = (await get_json(client, "/v2/queue?embed=lastUnusedOffers"))["queue"]
    item = models.MarathonQueueItem.from_json(queue[0])
    assert item.delay.overdue is True and item.app.id == "/plain"
    info = models.MarathonInfo.from_json(await get_json(client, "/v2/info"))
    assert info.marathon_config.master == "127.0.0.1:5050" and info.http_config.http_port == 8080
