"""``butte app``: the pure formatting, and the commands end to end against a small fake Marathon.

The fake serves canned but realistic Marathon 1.x JSON (with keys the CLI does not know, as newer servers
send) and changes state as it is polled. It runs in its own thread because the CLI runs in-process through
``main(argv)``, which owns its event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from butte.cli import main as butte_main
from butte.cli.app_cmd import load_app_definition, main
from butte.cli.app_progress import (
    AppView,
    DeploymentView,
    ErrorView,
    QueueItemView,
    TaskView,
    format_app,
    format_apps,
    format_error,
    format_table,
    format_tasks,
    offer_reasons,
    progress_line,
    stuck_reasons,
)
from butte.core.errors import ValidationError

TS = "2017-05-01T10:00:00.123Z"
DEPLOYMENT_ID = "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"


def app_info(app_id: str = "/web", **fields: Any) -> dict[str, Any]:
    """An AppInfo as Marathon 1.x returns it, including keys the CLI ignores."""
    info: dict[str, Any] = {
        "id": app_id,
        "cmd": "python3 -m http.server $PORT0",
        "instances": 5,
        "cpus": 0.5,
        "mem": 4096.0,
        "disk": 0.0,
        "gpus": 0,
        "portDefinitions": [{"port": 10000, "protocol": "tcp", "name": "http", "labels": {}}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300}],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "version": TS,
        "versionInfo": {"lastScalingAt": TS, "lastConfigChangeAt": TS},
        "tasksStaged": 0,
        "tasksRunning": 3,
        "tasksHealthy": 2,
        "tasksUnhealthy": 0,
        "deployments": [],
        "tasksStats": {"totalSummary": {"stats": {"counts": {"running": 3}}}},
        "role": "*",
    }
    info.update(fields)
    return info


def deployment(dep_id: str = DEPLOYMENT_ID, action: str = "RestartApplication", app: str = "/web") -> dict[str, Any]:
    return {
        "id": dep_id,
        "version": TS,
        "affectedApps": [app],
        "affectedPods": [],
        "steps": [{"actions": [{"action": action, "app": app}]}],
        "currentActions": [{"action": action, "app": app, "readinessCheckResults": []}],
        "currentStep": 1,
        "totalSteps": 1,
    }


def unused_offer(agent: str, reasons: list[str]) -> dict[str, Any]:
    offer = {"id": f"{agent}-O1", "agentId": agent, "hostname": f"{agent}.example", "resources": [], "attributes": []}
    return {"offer": offer, "reason": reasons, "timestamp": TS}


def queue_item(app: dict[str, Any], **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "app": app,
        "count": 2,
        "delay": {"timeLeftSeconds": 0, "overdue": True},
        "since": TS,
        "processedOffersSummary": {
            "processedOffersCount": 3,
            "unusedOffersCount": 3,
            "rejectSummaryLastOffers": [{"reason": "InsufficientMemory", "declined": 3, "processed": 3}],
            "rejectSummaryLaunchAttempt": [],
        },
        "lastUnusedOffers": [
            unused_offer("a1", ["InsufficientMemory"]),
            unused_offer("a1", ["InsufficientMemory"]),
            unused_offer("a2", ["InsufficientCpus", "InsufficientMemory"]),
        ],
    }
    item.update(fields)
    return item


def view(data: Any, type_: type[Any]) -> Any:
    return msgspec.json.decode(json.dumps(data), type=type_)


# --- pure formatting -----------------------------------------------------------------------------------------


def test_progress_line_names_step_action_and_counts() -> None:
    line = progress_line(view(deployment(), DeploymentView), view(app_info(), AppView))
    assert line == "deployment 5ed4c0c5: step 1/1 RestartApplication /web — 3/5 running, 2 healthy"


def test_progress_line_without_health_checks_or_app() -> None:
    dep = view({**deployment(action="StopApplication"), "currentActions": []}, DeploymentView)
    assert progress_line(dep, None) == "deployment 5ed4c0c5: step 1/1 StopApplication /web"
    app = view(app_info(healthChecks=[], tasksStaged=1), AppView)
    assert progress_line(dep, app).endswith("— 3/5 running, 1 staged")


def test_offer_reasons_count_distinct_agents_and_name_the_need() -> None:
    item = view(queue_item(app_info()), QueueItemView)
    assert offer_reasons(item, item.app) == (
        "no offer fits: InsufficientMemory on 2 agents (needs 4096 MB); InsufficientCpus on 1 agent (needs 0.5 CPUs)"
    )


def test_offer_reasons_fall_back_to_the_reject_summary() -> None:
    item = view(queue_item(app_info(), lastUnusedOffers=[]), QueueItemView)
    assert offer_reasons(item, item.app) == "no offer fits: InsufficientMemory on 3 offers (needs 4096 MB)"


def test_stuck_reasons_include_delay_and_last_failure() -> None:
    failure = {"appId": "/web", "host": "a1.example", "message": "Command exited with status 1", "state": "TASK_FAILED"}
    app = view(app_info(lastTaskFailure={**failure, "taskId": "web.1", "timestamp": TS, "version": TS}), AppView)
    item = view(
        queue_item(app_info(), lastUnusedOffers=[], processedOffersSummary=None, delay={"timeLeftSeconds": 42}),
        QueueItemView,
    )
    assert stuck_reasons(app, item) == [
        "launch delayed 42 s more (backoff after failures)",
        "2 instances waiting to launch",
        f"last task failure: TASK_FAILED on a1.example at {TS}: Command exited with status 1",
    ]


def test_stuck_reasons_when_nothing_is_queued() -> None:
    assert stuck_reasons(view(app_info(), AppView), None) == [
        "2/5 instances healthy; waiting for health checks to pass"
    ]
    assert stuck_reasons(view(app_info(healthChecks=[]), AppView), None) == ["3/5 instances running"]
    no_offers = queue_item(app_info(), lastUnusedOffers=[], processedOffersSummary={"processedOffersCount": 0})
    assert stuck_reasons(None, view(no_offers, QueueItemView))[0] == "no offers received yet"


def test_app_table_and_tasks_table() -> None:
    apps = [view(app_info("/web", deployments=[{"id": DEPLOYMENT_ID}]), AppView), view(app_info("/api"), AppView)]
    assert format_apps(apps).splitlines() == [
        "ID    INSTANCES  CPUS  MEM   DEPLOYING",
        "/api  3/5        0.5   4096  -",
        "/web  3/5        0.5   4096  5ed4c0c5",
    ]
    tasks = [
        view({"id": "web.1", "host": "a1", "ports": [31000, 31001], "state": "TASK_RUNNING",
              "healthCheckResults": [{"alive": True}], "checkResult": {}}, TaskView),
        view({"id": "web.2", "host": "a2", "ports": [], "state": "TASK_STAGING"}, TaskView),
    ]  # fmt: skip
    lines = format_tasks(tasks, checked=True).splitlines()
    assert lines[1].split() == ["web.1", "a1", "31000,31001", "TASK_RUNNING", "healthy"]
    assert lines[2].split() == ["web.2", "a2", "-", "TASK_STAGING", "pending"]
    assert format_tasks(tasks[1:], checked=False).splitlines()[1].split()[-1] == "-"


def test_app_summary() -> None:
    text = format_app(view(app_info(constraints=[["hostname", "UNIQUE"]]), AppView))
    assert "INSTANCES    3/5 running, 2 healthy" in text
    assert "COMMAND      python3 -m http.server $PORT0" in text
    assert "CONSTRAINTS  hostname UNIQUE" in text
    docker = view(app_info(cmd=None, container={"type": "DOCKER", "docker": {"image": "nginx:1.25"}}), AppView)
    assert "IMAGE        nginx:1.25" in format_app(docker)


def test_error_lists_details_by_path() -> None:
    error = ErrorView(message="Object is not valid")
    assert format_error(500, error) == "Marathon answered 500: Object is not valid"
    detailed = view({"message": "Object is not valid", "details": [{"path": "/mem", "errors": ["a", "b"]}]}, ErrorView)
    assert format_error(422, detailed).splitlines()[1] == "  /mem: a; b"


cells = st.text(alphabet="abc/-.0123456789", min_size=1, max_size=12)


@given(st.integers(1, 5).flatmap(lambda n: st.lists(st.lists(cells, min_size=n, max_size=n), max_size=6)))
def test_table_columns_line_up(rows: list[list[str]]) -> None:
    headers = [f"H{i}" for i in range(len(rows[0]))] if rows else ["H0"]
    lines = format_table(headers, rows).splitlines()
    assert len(lines) == len(rows) + 1
    starts = [lines[0].index(h) for h in headers]
    for line, row in zip(lines[1:], rows, strict=True):
        assert [line[start : start + len(cell)] for start, cell in zip(starts, row, strict=True)] == row


def test_load_app_definition_from_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text("id: web\ncmd: sleep 100\ninstances: 2\n")
    (tmp_path / "api.json").write_text('{\n\t"id": "/shop/api/",\n\t"cmd": "x"\n}')
    web_app = load_app_definition(str(tmp_path / "web.yaml"))
    assert web_app.app_id == "/web"
    assert json.loads(web_app.body) == {"id": "/web", "cmd": "sleep 100", "instances": 2}
    assert load_app_definition(str(tmp_path / "api.json")).app_id == "/shop/api"
    (tmp_path / "bad.json").write_text('{"cmd": "x"}')
    with pytest.raises(ValidationError, match="no app id"):
        load_app_definition(str(tmp_path / "bad.json"))
    with pytest.raises(ValidationError, match="cannot read"):
        load_app_definition(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("id: web")  # YAML, but the extension says JSON
    with pytest.raises(ValidationError, match="cannot read"):
        load_app_definition(str(tmp_path / "broken.json"))


# --- end to end against a fake Marathon ----------------------------------------------------------------------


class FakeMarathon:
    """A stand-in for a third-party Marathon: apps, deployments that end after some polls, a launch queue."""

    def __init__(self) -> None:
        self.url = ""
        self.apps: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.polls_left: dict[str, int | None] = {}
        self.queue: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.polls: int | None = 1  # GET /v2/deployments answers a new deployment this many times (None: forever)
        self.fail: tuple[int, dict[str, Any]] | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.record])
        app.router.add_get("/v2/apps", self.list_apps)
        app.router.add_post("/v2/apps", self.create)
        app.router.add_post("/v2/apps/{id:.+}/restart", self.restart)
        app.router.add_get("/v2/apps/{id:.+}/tasks", self.app_tasks)
        app.router.add_get("/v2/apps/{id:.+}", self.get_app)
        app.router.add_put("/v2/apps/{id:.+}", self.update)
        app.router.add_delete("/v2/apps/{id:.+}", self.delete)
        app.router.add_get("/v2/deployments", self.list_deployments)
        app.router.add_get("/v2/queue", self.get_queue)
        return app

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, dict(request.query), body))
        if self.fail is not None and request.method != "GET":
            return web.json_response(self.fail[1], status=self.fail[0])
        response: web.StreamResponse = await handler(request)
        return response

    def start_deployment(self, app_id: str, action: str) -> str:
        dep_id = str(uuid.uuid4())
        self.deployments[dep_id] = deployment(dep_id, action, app_id)
        self.polls_left[dep_id] = self.polls
        if app_id in self.apps:
            self.apps[app_id]["deployments"].append({"id": dep_id})
        return dep_id

    def changed(self, app_id: str, action: str, status: int = 200) -> web.Response:
        dep_id = self.start_deployment(app_id, action)
        return web.json_response(
            {"deploymentId": dep_id, "version": TS}, status=status, headers={"Marathon-Deployment-Id": dep_id}
        )

    def app_id(self, request: web.Request) -> str:
        return "/" + request.match_info["id"].strip("/")

    def missing(self, app_id: str) -> web.Response:
        return web.json_response({"message": f"App '{app_id}' does not exist"}, status=404)

    async def list_apps(self, request: web.Request) -> web.Response:
        return web.json_response({"apps": list(self.apps.values())})

    async def get_app(self, request: web.Request) -> web.Response:
        app = self.apps.get(self.app_id(request))
        return web.json_response({"app": app}) if app else self.missing(self.app_id(request))

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.apps[body["id"]] = app_info(body["id"], **{**body, "tasksRunning": 0, "tasksHealthy": 0})
        dep_id = self.start_deployment(body["id"], "StartApplication")
        # Marathon answers a POST with the AppInfo (deployments embedded) and the header, not a deployment result.
        return web.json_response(self.apps[body["id"]], status=201, headers={"Marathon-Deployment-Id": dep_id})

    async def update(self, request: web.Request) -> web.Response:
        app_id = self.app_id(request)
        if app_id not in self.apps:
            return self.missing(app_id)
        self.apps[app_id].update(await request.json())
        return self.changed(app_id, "ScaleApplication")

    async def restart(self, request: web.Request) -> web.Response:
        return self.changed(self.app_id(request), "RestartApplication")

    async def delete(self, request: web.Request) -> web.Response:
        app_id = self.app_id(request)
        self.apps.pop(app_id)
        return self.changed(app_id, "StopApplication")

    async def app_tasks(self, request: web.Request) -> web.Response:
        return web.json_response({"tasks": self.tasks.get(self.app_id(request), [])})

    async def list_deployments(self, request: web.Request) -> web.Response:
        """Each poll launches one more task; a deployment goes away once its polls are used up."""
        for dep_id, dep in list(self.deployments.items()):
            app = self.apps.get(dep["affectedApps"][0])
            if app is not None:
                app["tasksRunning"] = min(app["instances"], app["tasksRunning"] + 1)
            left = self.polls_left[dep_id]
            if left is not None:
                self.polls_left[dep_id] = left - 1
                if left <= 0:
                    del self.deployments[dep_id]
                    if app is not None:
                        app["deployments"] = [d for d in app["deployments"] if d["id"] != dep_id]
        return web.json_response(list(self.deployments.values()))

    async def get_queue(self, request: web.Request) -> web.Response:
        assert request.query.get("embed") == "lastUnusedOffers"
        return web.json_response({"queue": self.queue})

    def calls(self, method: str) -> list[tuple[str, str, dict[str, str], Any]]:
        return [r for r in self.requests if r[0] == method]


@pytest.fixture
def marathon() -> Iterator[FakeMarathon]:
    fake = FakeMarathon()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(fake.application())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    """Run ``butte app ...`` in-process; returns the exit code, stdout and stderr."""
    code = main([*argv, "--marathon", url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ("--interval", "0.01")


def test_deploy_creates_the_app_and_follows_its_deployment(
    marathon: FakeMarathon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marathon.polls = 2
    (tmp_path / "web.yaml").write_text("id: web\ncmd: sleep 100\ninstances: 2\nmem: 64\nhealthChecks: []\n")
    code, out, err = cli(capsys, marathon.url, "deploy", str(tmp_path / "web.yaml"), *FAST)
    assert (code, err) == (0, "")
    assert marathon.calls("POST")[0][1:] == ("/v2/apps", {"force": "false"}, {
        "id": "/web", "cmd": "sleep 100", "instances": 2, "mem": 64, "healthChecks": []})  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("deployment ") and lines[0].endswith(" started for /web")
    # one line per change: 1/2 then 2/2 running, then the end
    assert [line.split(": ", 1)[1] for line in lines[1:3]] == [
        "step 1/1 StartApplication /web — 1/2 running",
        "step 1/1 StartApplication /web — 2/2 running",
    ]
    assert lines[3].endswith("finished: /web 2/2 running") and len(lines) == 4


def test_deploy_updates_an_existing_app_with_put(
    marathon: FakeMarathon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marathon.apps["/web"] = app_info()
    (tmp_path / "web.json").write_text('{"id": "/web", "cmd": "sleep 5", "instances": 5}')
    code, out, _ = cli(capsys, marathon.url, "deploy", str(tmp_path / "web.json"), "--force", *FAST)
    assert code == 0
    _, path, query, body = marathon.calls("PUT")[0]
    assert (path, query, body["cmd"]) == ("/v2/apps/web", {"force": "true", "partialUpdate": "false"}, "sleep 5")
    assert not marathon.calls("POST")
    assert "finished: /web" in out


def test_deploy_timeout_explains_from_the_queue(
    marathon: FakeMarathon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marathon.polls = None
    marathon.apps["/web"] = app_info(instances=3, tasksRunning=2, lastTaskFailure={
        "appId": "/web", "host": "a1.example", "message": "OOM killed", "state": "TASK_FAILED",
        "taskId": "web.1", "timestamp": TS, "version": TS, "slaveId": "a1"})  # fmt: skip
    marathon.queue = [queue_item(app_info(), delay={"timeLeftSeconds": 12.4, "overdue": False})]
    code, out, err = cli(capsys, marathon.url, "restart", "web", "--timeout", "0.1", *FAST)
    assert code == 1
    assert out.splitlines()[1:] == [
        f"deployment {out.split()[1][:8]}: step 1/1 RestartApplication /web — 3/3 running, 2 healthy"
    ]
    assert err.splitlines()[1:5] == [
        "  - no offer fits: InsufficientMemory on 2 agents (needs 4096 MB); "
        "InsufficientCpus on 1 agent (needs 0.5 CPUs)",
        "  - launch delayed 12 s more (backoff after failures)",
        "  - 2 instances waiting to launch",
        f"  - last task failure: TASK_FAILED on a1.example at {TS}: OOM killed",
    ]
    assert "did not finish within 0.1 s" in err.splitlines()[0]


def test_scale_no_wait_and_remove(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    marathon.apps["/web"] = app_info()
    code, out, _ = cli(capsys, marathon.url, "scale", "/web", "7", "--no-wait")
    assert code == 0 and out.startswith("deployment ") and len(out.splitlines()) == 1
    assert marathon.calls("PUT")[0][1:] == ("/v2/apps/web", {"force": "false"}, {"instances": 7})
    assert not [r for r in marathon.requests if r[1] == "/v2/deployments"]
    del marathon.deployments[next(iter(marathon.deployments))]
    marathon.apps["/web"]["deployments"] = []
    code, out, _ = cli(capsys, marathon.url, "remove", "web", *FAST)
    assert code == 0 and out.splitlines()[-1].endswith("finished: /web no longer exists")
    assert marathon.calls("DELETE")[0][1:3] == ("/v2/apps/web", {})


def test_replaced_deployment_exits_1(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    marathon.apps["/web"] = app_info()
    marathon.polls = 0
    other = marathon.start_deployment("/web", "RestartApplication")
    marathon.polls_left[other] = None
    code, out, err = cli(capsys, marathon.url, "restart", "web", *FAST)
    assert code == 1 and "finished" not in out
    assert f"is now in deployment {other} (it was replaced by a forced change or rolled back)" in err


def test_list_show_and_tasks(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    marathon.apps["/web"] = app_info(deployments=[{"id": DEPLOYMENT_ID}])
    marathon.tasks["/web"] = [{"id": "web.1", "appId": "/web", "host": "a1", "ports": [31000], "state":
                               "TASK_RUNNING", "healthCheckResults": [{"alive": False}], "stagedAt": TS}]  # fmt: skip
    code, out, _ = cli(capsys, marathon.url, "list")
    assert code == 0 and out.splitlines()[1].split() == ["/web", "3/5", "0.5", "4096", "5ed4c0c5"]
    code, out, _ = cli(capsys, marathon.url, "show", "web")
    assert code == 0 and f"DEPLOYMENTS  {DEPLOYMENT_ID}" in out
    code, out, _ = cli(capsys, marathon.url, "show", "web", "--json")
    assert code == 0 and json.loads(out)["tasksStats"] == marathon.apps["/web"]["tasksStats"]
    code, out, _ = cli(capsys, marathon.url, "tasks", "web")
    assert code == 0 and out.splitlines()[1].split() == ["web.1", "a1", "31000", "TASK_RUNNING", "unhealthy"]


def test_http_errors_print_message_and_details(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, marathon.url, "show", "nope")
    assert (code, err) == (1, "Marathon answered 404: App '/nope' does not exist\n")
    marathon.apps["/web"] = app_info()
    details = [{"path": "/instances", "errors": ["must be greater than or equal to 0"]}]
    marathon.fail = (422, {"message": "Object is not valid", "details": details})
    code, _, err = cli(capsys, marathon.url, "scale", "web", "3")
    assert code == 1
    assert err.splitlines() == [
        "Marathon answered 422: Object is not valid",
        "  /instances: must be greater than or equal to 0",
    ]


def test_unreachable_marathon(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code, _, err = cli(capsys, url, "list")
    assert code == 1 and err.startswith(f"cannot reach Marathon at {url}")


def test_bad_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("- not\n- an app\n")
    code, _, err = cli(capsys, "http://127.0.0.1:9", "deploy", str(tmp_path / "x.yaml"))
    assert code == 2 and "does not hold one app definition" in err


def test_butte_main_runs_app(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    assert butte_main.main(["app", "list", "--marathon", marathon.url]) == 0
    assert capsys.readouterr().out.startswith("ID  INSTANCES")
