"""Marathon under faults, with real processes: an agent killed under an app, a rolling upgrade behind HTTP health
checks, and Marathon SIGKILLed mid-deployment (while it waits for capacity, and half-way through an upgrade).

Each scenario checks what ``butte marathon`` reports against the truth: the master's task list, the live task
processes (found by the cluster's marker in their environment) and what the tasks' HTTP servers answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from butte.testing.cluster import Cluster, slave_port
from butte.testing.invariants import running_tasks
from butte.testing.marathon import MarathonKit
from butte.testing.wait import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# Missed pongs make an agent unreachable within about a second (as in test_agent_loss.py).
FAST_LOSS = {"agent_ping_timeout": "500ms", "max_agent_ping_timeouts": 2}


def sleeper(app_id: str, instances: int, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 300", "cpus": 0.1, "mem": 32, "instances": instances, **extra}


async def framework_tasks(cluster: Cluster, state: str = "TASK_RUNNING") -> dict[str, str]:
    """Task id -> agent id of every task of every framework the master lists in ``state``."""
    master = await cluster.master_state()
    found = {}
    for framework in master["frameworks"]:
        for task in framework.get("tasks", []) + framework.get("unreachable_tasks", []):
            if task["state"] == state:
                found[task["id"]] = task["slave_id"]
    return found


async def agent_index(cluster: Cluster, agent_id: str) -> int:
    """Which of the cluster's agents has the Mesos agent id ``agent_id``."""
    slaves = (await cluster.master_state())["slaves"]
    port = next(slave_port(s) for s in slaves if s["id"] == agent_id)
    return next(i for i, agent in enumerate(cluster.agents) if agent.port == port)


class EventLog:
    """Marathon's ``/v2/events`` stream, read in the background into a list of (event type, payload)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()

    async def __aenter__(self) -> EventLog:
        self._task = asyncio.ensure_future(self._read())
        await asyncio.wait_for(self._open.wait(), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [payload for kind, payload in self.events if kind == event_type]

    async def _read(self) -> None:
        headers = {"Accept": "text/event-stream"}
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/v2/events", headers=headers) as r:
            self._open.set()
            kind = ""
            async for raw in r.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    self.events.append((kind, json.loads(line.partition(":")[2])))


@pytest.fixture
async def lossy(tmp_path: Path) -> AsyncIterator[MarathonKit]:
    async with (
        Cluster(agents=3, master_flags=FAST_LOSS, work_dir=tmp_path / "cluster") as cluster,
        MarathonKit(cluster) as kit,
    ):
        yield kit


async def test_an_app_survives_kill_9_of_an_agent_and_ends_with_exactly_its_instances(lossy: MarathonKit) -> None:
    marathon, cluster = lossy, lossy.cluster
    await marathon.request("POST", "/v2/apps", sleeper("/survivor", 5))
    await marathon.wait_running("/survivor", 5)
    assert (await marathon.app("/survivor"))["unreachableStrategy"] == {
        "inactiveAfterSeconds": 0,
        "expungeAfterSeconds": 0,
    }
    before = {task["id"]: task["slaveId"] for task in (await marathon.app("/survivor"))["tasks"]}
    victim_id = max(set(before.values()), key=list(before.values()).count)
    lost = {task_id for task_id, agent_id in before.items() if agent_id == victim_id}
    victim = await agent_index(cluster, victim_id)

    async with EventLog(marathon.url) as events:
        await cluster.kill_agent(victim)

        async def replaced() -> dict[str, str] | None:
            app = await marathon.app("/survivor")
            tasks = {task["id"]: task["slaveId"] for task in app["tasks"] if task["state"] == "TASK_RUNNING"}
            on_live = all(agent_id != victim_id for agent_id in tasks.values())
            return tasks if len(tasks) == 5 and len(app["tasks"]) == 5 and on_live else None

        after = await until(replaced, timeout=30, what="5 tasks again, none on the killed agent", interval=0.1)
        unreachable = {
            e["taskId"] for e in events.of_type("status_update_event") if e["taskStatus"] == "TASK_UNREACHABLE"
        }
    assert unreachable == lost
    assert set(after).isdisjoint(lost) and set(before) - lost <= set(after)
    assert await framework_tasks(cluster) == after
    assert set(await framework_tasks(cluster, "TASK_UNREACHABLE")) <= lost

    # The agent comes back with its old tasks still running: Marathon expunged them, so it kills them.
    await cluster.restart_agent(victim)

    async def exactly_five() -> bool:
        return set(running_tasks(cluster.marker)) == set(after) and await framework_tasks(cluster) == after

    await until(exactly_five, timeout=30, what="the old tasks to be killed, leaving exactly 5", interval=0.2)
    await marathon.wait_running("/survivor", 5)
    assert {task["id"] for task in (await marathon.app("/survivor"))["tasks"]} == set(after)


def web_app(app_id: str, version: str, strategy: dict[str, float]) -> dict[str, Any]:
    """4 HTTP servers on $PORT0 that serve their version at /version.txt, behind a fast HTTP health check."""
    server = f"{shlex.quote(sys.executable)} -m http.server $PORT0 --bind 127.0.0.1"
    check = {"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1, "gracePeriodSeconds": 5}
    return {
        **sleeper(app_id, 4),
        "cmd": f"echo $VERSION > version.txt && exec {server}",
        "env": {"VERSION": version},
        "portDefinitions": [{"port": 0}],
        "healthChecks": [{**check, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}],
        "upgradeStrategy": strategy,
    }


def healthy_count(app: dict[str, Any]) -> int:
    """Tasks Marathon shows running with every health result alive."""
    return sum(
        1
        for task in app["tasks"]
        if task["state"] == "TASK_RUNNING"
        and task.get("healthCheckResults")
        and all(result["alive"] for result in task["healthCheckResults"])
    )


async def served_versions(session: aiohttp.ClientSession, app: dict[str, Any]) -> list[str]:
    """What each listed task's real server answers at /version.txt (tasks that do not answer are left out)."""

    async def ask(task: dict[str, Any]) -> str | None:
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with session.get(f"http://{task['host']}:{task['ports'][0]}/version.txt") as response:
                return (await response.text()).strip() if response.status == 200 else None
        return None

    answers = await asyncio.gather(*(ask(task) for task in app["tasks"]))
    return [answer for answer in answers if answer is not None]


@pytest.mark.parametrize(
    "strategy",
    [
        {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0},
        {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5},
    ],
    ids=["half-healthy", "all-healthy-with-room"],
)
async def test_a_rolling_upgrade_keeps_the_minimum_healthy_capacity(tmp_path: Path, strategy: dict[str, float]) -> None:
    min_healthy = math.ceil(4 * strategy["minimumHealthCapacity"])
    async with (
        Cluster(agents=2, work_dir=tmp_path / "cluster") as cluster,
        MarathonKit(cluster) as marathon,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as probe,
    ):
        await marathon.request("POST", "/v2/apps", web_app("/web", "v1", strategy))
        await marathon.wait_running("/web", 4, healthy=True)
        assert sorted(await served_versions(probe, await marathon.app("/web"))) == ["v1"] * 4

        await marathon.request("PUT", "/v2/apps/web", {"env": {"VERSION": "v2"}})
        samples: list[tuple[int, int]] = []

        async def upgraded() -> bool:
            app = await marathon.app("/web")
            served = await served_versions(probe, app)
            samples.append((healthy_count(app), len(served)))
            new = [task for task in app["tasks"] if task["version"] == app["version"]]
            return not app["deployments"] and len(app["tasks"]) == 4 and len(new) == 4 and healthy_count(app) == 4

        await until(upgraded, timeout=45, what="the upgrade to finish with 4 healthy new tasks", interval=0.1)
        app = await marathon.app("/web")
        assert sorted(await served_versions(probe, app)) == ["v2"] * 4

    assert len(samples) > 5, samples
    assert min(healthy for healthy, _ in samples) >= min_healthy, samples
    assert min(answering for _, answering in samples) >= min_healthy, samples


SMALL_AGENT = "cpus:1;mem:1024;disk:1000;ports:[31000-32000]"


async def test_a_marathon_killed_mid_deployment_resumes_it_and_orphans_nothing(tmp_path: Path) -> None:
    async with (
        Cluster(agents=1, agent_resources=SMALL_AGENT, work_dir=tmp_path / "cluster") as cluster,
        MarathonKit(cluster) as marathon,
    ):
        await resume_after_restart(cluster, marathon)


async def resume_after_restart(cluster: Cluster, marathon: MarathonKit) -> None:
    # Two of the four fit on the one small agent: the deployment waits for capacity that comes only later.
    app = {**web_app("/wide", "v1", {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}), "cpus": 0.4}
    deployment_id = (await marathon.request("POST", "/v2/apps", app))["deployments"][0]["id"]
    framework_id = (await marathon.request("GET", "/v2/info"))["frameworkId"]

    async def two_healthy() -> bool:
        return healthy_count(await marathon.app("/wide")) == 2

    await until(two_healthy, timeout=30, what="the two tasks that fit to be healthy", interval=0.1)
    probed_before = {
        task["id"]: task["healthCheckResults"][0]["lastSuccess"] for task in (await marathon.app("/wide"))["tasks"]
    }
    first = set(probed_before)

    await marathon.kill()
    assert set(running_tasks(cluster.marker)) == first  # Mesos keeps a failed-over framework's tasks running.
    await marathon.start()
    assert (await marathon.request("GET", "/v2/info"))["frameworkId"] == framework_id
    assert [d["id"] for d in await marathon.request("GET", "/v2/deployments")] == [deployment_id]
    assert {task["id"] for task in (await marathon.app("/wide"))["tasks"]} == first

    async def probed_again() -> bool:
        # The stored health of a task is stale after a restart: Marathon must probe its tasks again.
        app = await marathon.app("/wide")
        fresh = [t for t in app["tasks"] if t["healthCheckResults"][0]["lastSuccess"] > probed_before[t["id"]]]
        return healthy_count(app) == 2 and len(fresh) == 2

    await until(probed_again, timeout=10, what="the health checks to run again after the restart", interval=0.1)

    await cluster.add_agent()
    await marathon.wait_running("/wide", 4, healthy=True, timeout=30)
    tasks = {task["id"] for task in (await marathon.app("/wide"))["tasks"]}
    assert first < tasks
    assert set(await framework_tasks(cluster)) == tasks
    assert set(running_tasks(cluster.marker)) == tasks
    master = await cluster.master_state()
    assert [f["id"] for f in master["frameworks"]] == [framework_id]


async def test_a_rolling_upgrade_cut_by_a_marathon_restart_ends_with_only_new_tasks(tmp_path: Path) -> None:
    async with Cluster(agents=2, work_dir=tmp_path / "cluster") as cluster, MarathonKit(cluster) as marathon:
        await upgrade_across_restart(cluster, marathon, tmp_path / "gate")


async def upgrade_across_restart(cluster: Cluster, marathon: MarathonKit, gate: Path) -> None:
    v1 = web_app("/roll", "v1", {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5})
    await marathon.request("POST", "/v2/apps", v1)
    await marathon.wait_running("/roll", 4, healthy=True)
    old = {task["id"] for task in (await marathon.app("/roll"))["tasks"]}
    framework_id = (await marathon.request("GET", "/v2/info"))["frameworkId"]

    # The new version's servers start only once the gate file exists, so the upgrade stops half-way: two new
    # tasks (the room maximumOverCapacity 0.5 gives) running but not healthy, the four old ones untouched.
    waiting = f'while [ ! -e "$GATE" ]; do sleep 0.1; done; {v1["cmd"]}'
    check = {**v1["healthChecks"][0], "gracePeriodSeconds": 300}
    change = {"cmd": waiting, "env": {"VERSION": "v2", "GATE": str(gate)}, "healthChecks": [check]}
    deployment_id = (await marathon.request("PUT", "/v2/apps/roll", change))["deploymentId"]

    async def half_way() -> set[str] | None:
        tasks = {task["id"]: task["state"] for task in (await marathon.app("/roll"))["tasks"]}
        new = set(tasks) - old
        return new if len(new) == 2 and set(tasks.values()) == {"TASK_RUNNING"} and old <= set(tasks) else None

    new = await until(half_way, timeout=30, what="two new tasks running next to the four old ones", interval=0.1)
    await marathon.kill()
    await marathon.start()
    assert (await marathon.request("GET", "/v2/info"))["frameworkId"] == framework_id
    assert [d["id"] for d in await marathon.request("GET", "/v2/deployments")] == [deployment_id]
    assert {task["id"] for task in (await marathon.app("/roll"))["tasks"]} == old | new

    async def old_healthy() -> bool:
        return healthy_count(await marathon.app("/roll")) == 4

    await until(old_healthy, timeout=10, what="the four old tasks healthy after the restart", interval=0.1)
    gate.touch()
    await marathon.wait_running("/roll", 4, healthy=True, timeout=40)
    app = await marathon.app("/roll")
    tasks = {task["id"] for task in app["tasks"]}
    assert new < tasks and tasks.isdisjoint(old)
    assert all(task["version"] == app["version"] for task in app["tasks"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as probe:
        assert sorted(await served_versions(probe, app)) == ["v2"] * 4
    assert set(await framework_tasks(cluster)) == tasks == set(running_tasks(cluster.marker))
