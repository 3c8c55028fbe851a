"""``butte marathon`` on a real cluster: apps deploy, scale, restart, roll back and go away, with real tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonHttpError, MarathonKit
from butte.testing.wait import until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def marathon(tmp_path: Any) -> AsyncIterator[MarathonKit]:
    async with Cluster(agents=2, work_dir=tmp_path) as cluster, MarathonKit(cluster) as kit:
        yield kit


def sleeper(app_id: str, instances: int = 2, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 300", "cpus": 0.1, "mem": 32, "instances": instances, **extra}


async def test_create_scale_and_delete_an_app(marathon: MarathonKit) -> None:
    status, created = await marathon.call("POST", "/v2/apps", sleeper("/web"))
    assert status == 201, created
    assert created["id"] == "/web" and created["deployments"]
    await marathon.wait_running("/web", 2)

    app = await marathon.app("/web")
    ports = [task["ports"] for task in app["tasks"]]
    assert all(len(p) == 1 and 31000 <= p[0] <= 32000 for p in ports), ports

    answer = await marathon.request("PUT", "/v2/apps/web", {"instances": 3})
    assert answer["deploymentId"]
    await marathon.wait_running("/web", 3)

    await marathon.request("DELETE", "/v2/apps//web")
    await marathon.wait_no_deployments()
    assert (await marathon.request("GET", "/v2/apps"))["apps"] == []
    state = await marathon.cluster.master_state()
    running = [t for f in state["frameworks"] for t in f["tasks"] if t["state"] == "TASK_RUNNING"]
    assert running == []


async def test_restart_replaces_every_task_and_rollback_restores_the_old_version(marathon: MarathonKit) -> None:
    await marathon.request("POST", "/v2/apps", sleeper("/api", env={"COLOUR": "blue"}))
    await marathon.wait_running("/api", 2)
    first_version = (await marathon.app("/api"))["version"]
    before = {task["id"] for task in (await marathon.app("/api"))["tasks"]}

    await marathon.request("POST", "/v2/apps/api/restart")
    await marathon.wait_running("/api", 2)
    after = {task["id"] for task in (await marathon.app("/api"))["tasks"]}
    assert before.isdisjoint(after)

    await marathon.request("PUT", "/v2/apps/api", {"env": {"COLOUR": "green"}})
    await marathon.wait_running("/api", 2)
    assert (await marathon.app("/api"))["env"] == {"COLOUR": "green"}

    versions = (await marathon.request("GET", "/v2/apps/api/versions"))["versions"]
    assert first_version in versions
    await marathon.request("PUT", "/v2/apps/api", {"version": first_version})
    await marathon.wait_running("/api", 2)
    assert (await marathon.app("/api"))["env"] == {"COLOUR": "blue"}


async def test_a_failing_task_is_replaced_and_recorded_as_the_last_failure(marathon: MarathonKit) -> None:
    await marathon.request("POST", "/v2/apps", sleeper("/flaky", instances=1, cmd="exit 3", backoffSeconds=0.2))

    async def failed() -> dict[str, Any] | None:
        app = (await marathon.request("GET", "/v2/apps/flaky"))["app"]
        failure: dict[str, Any] | None = app.get("lastTaskFailure")
        return failure

    failure = await until(failed, timeout=30, what="a lastTaskFailure")
    assert failure["state"] == "TASK_FAILED" and failure["appId"] == "/flaky"
    queue = await marathon.request("GET", "/v2/queue")
    assert [item["app"]["id"] for item in queue["queue"]] in ([], ["/flaky"])


async def test_an_app_nothing_can_hold_says_why_in_the_queue(marathon: MarathonKit) -> None:
    await marathon.request("POST", "/v2/apps", sleeper("/huge", instances=1, mem=10_000_000))

    async def reasons() -> set[str] | None:
        queue = await marathon.request("GET", "/v2/queue", embed="lastUnusedOffers")
        found = {r for item in queue["queue"] for offer in item.get("lastUnusedOffers", []) for r in offer["reason"]}
        return found or None

    assert "InsufficientMemory" in await until(reasons, timeout=30, what="unused offer reasons")
    deployments = await marathon.request("GET", "/v2/deployments")
    assert [d["affectedApps"] for d in deployments] == [["/huge"]]


async def test_a_second_change_to_a_locked_app_is_refused_unless_forced(marathon: MarathonKit) -> None:
    await marathon.request("POST", "/v2/apps", sleeper("/locked", instances=1, mem=10_000_000))
    with pytest.raises(MarathonHttpError) as refused:
        await marathon.request("PUT", "/v2/apps/locked", {"mem": 32})
    assert refused.value.status == 409
    assert refused.value.body["deployments"]
    await marathon.request("PUT", "/v2/apps/locked", {"mem": 32}, force="true")
    await marathon.wait_running("/locked", 1)


async def test_docker_apps_fail_with_a_reason_on_agents_without_docker(marathon: MarathonKit) -> None:
    app = sleeper("/boxed", instances=1, container={"type": "DOCKER", "docker": {"image": "nginx"}})
    await marathon.request("POST", "/v2/apps", app)

    async def failure() -> str | None:
        found = (await marathon.request("GET", "/v2/apps/boxed"))["app"].get("lastTaskFailure")
        return found["message"] if found else None

    message = await until(failure, timeout=30, what="the docker app's lastTaskFailure")
    assert "Docker" in message
