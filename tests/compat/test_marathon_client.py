"""Unmodified ``marathon`` 0.13.0 (PyPI) against a real ``butte marathon`` on a real two-agent cluster.

The client is strict (marathon-chronos-api.md §A7): its models take ``**{snake_case(key): value}`` of every
response, so one key it does not know fails the whole call; ``create_app`` wants exactly 201; ``get_info`` needs
the three config objects; ``event_stream`` needs ``eventType`` and ``timestamp`` on every event and the heavy
``plan`` form on deployment events. It is a synchronous ``requests`` client, so the tests are plain functions;
the cluster and Marathon run from a module fixture on a private event loop (the processes need no running loop
between calls), and every wait polls the client itself under a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonKit
from butte.testing.pytest_plugin import skip_without_services

marathon = pytest.importorskip(
    "marathon", reason="the marathon client is not installed: run scripts/install-compat-deps"
)

from marathon import MarathonClient, NotFoundError  # noqa: E402
from marathon.models import MarathonApp, MarathonDeployment, MarathonGroup, MarathonInfo, MarathonTask  # noqa: E402
from marathon.models.app import MarathonHealthCheck  # noqa: E402
from marathon.models.events import MarathonEvent  # noqa: E402
from marathon.models.queue import MarathonQueueItem  # noqa: E402

pytestmark = [
    pytest.mark.compat,
    pytest.mark.timeout(120),
    # The client builds a COMMAND health check read back from the server (Marathon's own wire form,
    # {"command": {"value": ...}}) through a branch that logs with Logger.warn, deprecated since Python 3.3.
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]

T = TypeVar("T")
WAIT_S = 30.0
POLL_S = 0.1


def until(predicate: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``predicate`` until it returns something truthy, and return it.

    Raises:
        AssertionError: the deadline passed; the message says what was awaited and the last value.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last value: {value!r})")
        time.sleep(POLL_S)


@pytest.fixture(scope="module", autouse=True)
def iterable_alias() -> Iterator[None]:
    # 0.13.0's JSON encoders test isinstance(obj, collections.Iterable), an alias Python 3.10 removed; without it
    # any app holding a nested model (a health check, a group's apps) fails to serialise. The fix (upstream
    # ebb2ee3, collections.abc) is unreleased, so the alias is put back for this module only.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)
        yield


@pytest.fixture(scope="module")
def marathon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real cluster with two agents and a real ``butte marathon``, for the whole module."""
    skip_without_services()
    loop = asyncio.new_event_loop()
    work_dir: Path = tmp_path_factory.mktemp("marathon-client")
    cluster = Cluster(agents=2, work_dir=work_dir)
    kit = MarathonKit(cluster)
    try:
        loop.run_until_complete(cluster.start())
        loop.run_until_complete(kit.start())
        yield kit.url
    finally:
        try:
            loop.run_until_complete(kit.stop())
            loop.run_until_complete(cluster.stop())
        finally:
            loop.close()


@pytest.fixture
def client(marathon_url: str) -> Iterator[MarathonClient]:
    client = MarathonClient(marathon_url, timeout=10)
    yield client
    client.session.close()
    client.sse_session.close()


def sleeper(instances: int = 2, **extra: Any) -> MarathonApp:
    return MarathonApp(**{"cmd": "sleep 300", "cpus": 0.1, "mem": 32, "instances": instances, **extra})


def deployments_of(client: MarathonClient, app_id: str) -> list[MarathonDeployment]:
    return [d for d in client.list_deployments() if app_id in d.affected_apps]


def wait_settled(client: MarathonClient, app_id: str, count: int, *, healthy: bool = False) -> MarathonApp:
    """Wait (polling the client) until ``app_id`` runs ``count`` tasks and no deployment touches it."""

    def settled() -> MarathonApp | None:
        if deployments_of(client, app_id):
            return None
        app = client.get_app(app_id, embed_tasks=True)
        running = app.tasks_healthy if healthy else app.tasks_running
        return app if running == count and len(app.tasks) == count else None

    return until(settled, f"{app_id} to settle at {count} tasks")


def wait_gone(client: MarathonClient, app_id: str) -> None:
    def gone() -> bool:
        try:
            client.get_app(app_id)
        except NotFoundError:
            return not deployments_of(client, app_id)
        return False

    until(gone, f"{app_id} to be deleted")


def test_an_app_is_created_listed_scaled_and_its_tasks_killed(client: MarathonClient) -> None:
    app_id = "/client-web"
    created = client.create_app(app_id, sleeper())
    # create_app returns False for anything but 201.
    assert isinstance(created, MarathonApp), created
    assert created.id == app_id and created.instances == 2 and created.deployments
    wait_settled(client, app_id, 2)

    [listed] = [a for a in client.list_apps(embed_tasks=True, embed_counts=True) if a.id == app_id]
    assert listed.tasks_running == 2 and all(isinstance(t, MarathonTask) for t in listed.tasks)
    # app_id filters on the server (substring of the id), other keywords on the client's models.
    assert [a.id for a in client.list_apps(app_id="client-web", instances=2)] == [app_id]
    assert client.get_app(app_id).cmd == "sleep 300"

    assert client.scale_app(app_id, instances=3)["deploymentId"]
    wait_settled(client, app_id, 3)
    assert client.scale_app(app_id, delta=-1)["deploymentId"]
    tasks = wait_settled(client, app_id, 2).tasks

    assert {t.id for t in client.list_tasks(app_id)} == {t.id for t in tasks}
    assert {t.id for t in tasks} <= {t.id for t in client.list_tasks()}
    assert all(t.app_id == app_id and t.state == "TASK_RUNNING" for t in client.list_tasks(app_id))

    # scale=True answers with a deployment (a dict), not the killed task.
    killed = client.kill_task(app_id, tasks[0].id, scale=True)
    assert isinstance(killed, dict) and killed["deploymentId"], killed
    assert [t.id for t in wait_settled(client, app_id, 1).tasks] == [tasks[1].id]
    assert client.get_app(app_id).instances == 1

    answer = client.kill_tasks(app_id, scale=True)
    assert isinstance(answer, dict) and answer["deploymentId"], answer
    wait_settled(client, app_id, 0)
    assert client.get_app(app_id).instances == 0

    assert client.delete_app(app_id)["deploymentId"]
    wait_gone(client, app_id)


def test_an_app_gets_a_health_check_restarts_and_rolls_back(client: MarathonClient) -> None:
    app_id = "/client-api"
    assert isinstance(client.create_app(app_id, sleeper(env={"COLOUR": "blue"})), MarathonApp)
    first = wait_settled(client, app_id, 2)

    # A nested MarathonHealthCheck serialises once collections.Iterable exists (the iterable_alias fixture).
    # delaySeconds is not a named parameter in 0.13.0; its **kwargs carry it (Marathon's default is 15 s).
    check = MarathonHealthCheck(
        protocol="COMMAND",
        command="true",
        grace_period_seconds=10,
        interval_seconds=1,
        timeout_seconds=5,
        delay_seconds=0,
    )
    assert client.update_app(app_id, MarathonApp(health_checks=[check]))["deploymentId"]
    checked = wait_settled(client, app_id, 2, healthy=True)
    [read_back] = checked.health_checks
    assert read_back.protocol == "COMMAND" and read_back.command == {"value": "true"}
    assert {t.id for t in checked.tasks}.isdisjoint({t.id for t in first.tasks})

    assert client.restart_app(app_id)["deploymentId"]
    restarted = wait_settled(client, app_id, 2, healthy=True)
    assert {t.id for t in restarted.tasks}.isdisjoint({t.id for t in checked.tasks})
    assert all(r.alive for t in restarted.tasks for r in t.health_check_results)

    versions = client.list_versions(app_id)
    assert first.version in versions and checked.version in versions
    old = client.get_version(app_id, first.version)
    assert isinstance(old, MarathonApp) and old.health_checks == [] and old.env == {"COLOUR": "blue"}

    assert client.rollback_app(app_id, first.version)["deploymentId"]
    rolled_back = wait_settled(client, app_id, 2)
    assert rolled_back.health_checks == [] and rolled_back.env == {"COLOUR": "blue"}

    assert client.delete_app(app_id, force=True)["deploymentId"]
    wait_gone(client, app_id)


def test_a_stuck_deployment_shows_in_the_queue_and_is_rolled_back_or_cancelled(client: MarathonClient) -> None:
    app_id = "/client-huge"
    assert isinstance(client.create_app(app_id, sleeper(instances=1, mem=10_000_000)), MarathonApp)

    def queued() -> list[MarathonQueueItem]:
        return [q for q in client.list_queue(embed_last_unused_offers=True) if q.app.id == app_id]

    [item] = until(queued, f"{app_id} in the queue")
    assert item.count == 1
    [stuck] = until(lambda: deployments_of(client, app_id), f"a deployment of {app_id}")

    # Without force Marathon reverts the plan with a new deployment: reverting a create deletes the app.
    rollback = client.delete_deployment(stuck.id)
    assert rollback["deploymentId"] != stuck.id
    wait_gone(client, app_id)

    assert isinstance(client.create_app(app_id, sleeper(instances=1, mem=10_000_000)), MarathonApp)
    [stuck] = until(lambda: deployments_of(client, app_id), f"a deployment of {app_id}")
    assert client.delete_deployment(stuck.id, force=True) == {}
    until(lambda: not deployments_of(client, app_id), f"the deployment of {app_id} to be cancelled")
    assert client.get_app(app_id).instances == 1

    client.delete_app(app_id, force=True)
    wait_gone(client, app_id)


def test_info_leader_ping_and_metrics(client: MarathonClient, marathon_url: str) -> None:
    info = client.get_info()
    assert isinstance(info, MarathonInfo) and info.name == "marathon" and info.elected
    assert info.framework_id and info.leader == marathon_url.removeprefix("http://")
    assert info.http_config.http_port == int(marathon_url.rsplit(":", 1)[1])
    assert client.get_leader() == {"leader": info.leader}
    assert client.ping() in (b"pong", b'"pong"')
    assert isinstance(client.get_metrics(), dict)


def test_a_group_is_created_scaled_and_deleted(client: MarathonClient) -> None:
    group_id, app_id = "/client-shop", "/client-shop/cart"
    group = MarathonGroup(id=group_id, apps=[MarathonApp(id=app_id, cmd="sleep 300", cpus=0.1, mem=32, instances=1)])
    assert client.create_group(group)["deploymentId"]
    wait_settled(client, app_id, 1)

    fetched = client.get_group(group_id)
    assert isinstance(fetched, MarathonGroup) and [a.id for a in fetched.apps] == [app_id]
    assert group_id in [g.id for g in client.list_groups()]

    assert client.scale_group(group_id, 2)["deploymentId"]
    wait_settled(client, app_id, 2)

    assert client.delete_group(group_id, force=True)["deploymentId"]
    wait_gone(client, app_id)
    with pytest.raises(NotFoundError):
        client.get_group(group_id)


class EventReader:
    """Reads ``event_stream()`` on a thread until it has seen a ``deployment_success``."""

    def __init__(self, client: MarathonClient) -> None:
        self.events: list[MarathonEvent] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._client = client
        self._thread = threading.Thread(target=self._read, name="marathon-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            stream = self._client.event_stream()
            for event in stream:
                self.events.append(event)
                if event.event_type == "deployment_success":
                    stream.close()
                    break
        except BaseException as exc:  # the test reports it; a thread must not raise into pytest
            self.error = exc
        finally:
            self.done.set()

    def types(self) -> list[str]:
        return [e.event_type for e in self.events]


def test_the_event_stream_parses_deployment_events(client: MarathonClient) -> None:
    reader = EventReader(client)
    until(lambda: reader.events or reader.error, "the event stream to attach")
    assert reader.error is None and reader.types()[0] == "event_stream_attached"

    app_id = "/client-events"
    assert isinstance(client.create_app(app_id, sleeper(instances=1)), MarathonApp)
    assert reader.done.wait(WAIT_S), f"no deployment_success within {WAIT_S} s; saw {reader.types()}"
    assert reader.error is None, reader.error
    types = reader.types()
    assert {"api_post_event", "deployment_info", "deployment_success"} <= set(types), types
    info = next(e for e in reader.events if e.event_type == "deployment_info")
    assert [a.app for step in info.plan.steps for a in step.actions] and info.plan.target.apps is not None

    client.delete_app(app_id)
    wait_gone(client, app_id)
