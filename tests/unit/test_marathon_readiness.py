"""Readiness checks: the core gating deployments on them, the book, the JSON, then real probes on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from marathon_core_kit import BIG, Harness, app, killed, launched, of_type, offer, published

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.api.render import app_info, deployment_json, readiness_json
from butte.frameworks.marathon.control import DeploymentStatus
from butte.frameworks.marathon.model import HealthResult
from butte.frameworks.marathon.readiness import ReadinessProbe, readiness_url
from butte.frameworks.marathon.readinessbook import HttpResponse, ReadinessResult, readiness_port
from butte.testing.wait import until
from butte.wire.marathon import ReadinessCheck

READY_CHECK = {"name": "warm", "portName": "http", "intervalSeconds": 2, "timeoutSeconds": 1}


def ready_app(instances: int = 2, **fields: Any) -> Any:
    return app(
        instances=instances,
        portDefinitions=[{"port": 0, "name": "admin"}, {"port": 0, "name": "http"}],
        readinessChecks=[READY_CHECK],
        **fields,
    )


def verdict(h: Harness, task_id: str, ready: bool) -> list[fx.Effect]:
    result = ReadinessResult(name="warm", task_id=task_id, app_id="/web", ready=ready)
    return h.core.on_readiness(task_id, result, h.now)


def watched(effects: list[fx.Effect]) -> list[str]:
    return [effect.instance.task_id for effect in of_type(effects, fx.WatchReadiness)]


def start_ready(h: Harness, instances: int = 2) -> list[str]:
    """Deploy the app, run its tasks and answer their readiness probes with ready."""
    h.deploy(ready_app(instances))
    task_ids = launched(h.offers(offer(resources=BIG)))
    assert sorted(watched(h.run(task_ids))) == sorted(task_ids)
    for task_id in task_ids:
        verdict(h, task_id, True)
    assert len(h.core.deployments) == 0
    return task_ids


# ------------------------------------------------------------------------------------------------ the core


def test_a_start_waits_for_readiness_and_then_finishes() -> None:
    h = Harness()
    h.deploy(ready_app(2))
    task_ids = launched(h.offers(offer(resources=BIG)))
    effects = h.run(task_ids)
    watches = of_type(effects, fx.WatchReadiness)
    assert sorted(w.instance.task_id for w in watches) == sorted(task_ids)
    # The check probes the host port of the port definition named portName (the second one).
    assert all(w.port == w.instance.ports[1] and w.check.name == "warm" for w in watches)
    assert len(h.core.deployments) == 1
    verdict(h, task_ids[0], False)
    assert getattr(h.core.book.get(task_ids[0]), "ready", None) is False
    assert verdict(h, task_ids[0], False) == []  # no change of ready-ness: nothing to save or recompute
    verdict(h, task_ids[0], True)
    assert len(h.core.deployments) == 1
    last = verdict(h, task_ids[1], True)
    assert published(last, "deployment_success") and len(h.core.deployments) == 0
    assert all(i.ready is True for i in h.instances())


def test_a_restart_kills_old_instances_only_as_new_ones_become_ready() -> None:
    h = Harness()
    old = start_ready(h, 2)
    h.restart("/web")
    new = launched(h.offers(offer(resources=BIG)))
    assert len(new) == 2  # maximumOverCapacity 1: all new ones next to the old
    effects = h.run(new)
    assert sorted(watched(effects)) == sorted(new)  # old instances are ready already: never probed again
    assert killed(effects) == []
    assert killed(verdict(h, new[0], False)) == []
    assert killed(h.tick()) == [] and len(h.core.deployments) == 1
    first = verdict(h, new[0], True)
    assert len(killed(first)) == 1 and set(killed(first)) <= set(old)
    h.finish_kills(first)
    second = verdict(h, new[1], True)
    assert len(killed(second)) == 1
    done = h.finish_kills(second)
    assert published(done, "deployment_success") and len(h.core.deployments) == 0
    assert sorted(i.task_id for i in h.instances()) == sorted(new)


def test_results_live_with_the_deployment_and_end_with_it() -> None:
    h = Harness()
    h.deploy(ready_app(1))
    (task_id,) = launched(h.offers(offer(resources=BIG)))
    h.run([task_id])
    verdict(h, task_id, False)
    assert h.core.readiness.results(["/web"]) == (
        ReadinessResult(name="warm", task_id=task_id, app_id="/web", ready=False),
    )
    verdict(h, task_id, True)
    assert h.core.readiness.results(["/web"]) == ()  # the deployment finished with that result
    assert h.core.readiness.watched() == frozenset()


def test_an_instance_that_ends_or_a_cancelled_deployment_stops_its_probe() -> None:
    h = Harness()
    h.deploy(ready_app(2))
    first, second = launched(h.offers(offer(resources=BIG)))
    h.run([first, second])
    ended = h.status(first, "TASK_FAILED")
    assert fx.UnwatchReadiness(first) in ended
    (deployment,) = [run.plan.id for run in h.core.deployments]
    _, effects = h.core.cancel_deployment(deployment, force=True, rollback_id="r", version="v", now=h.now)
    assert fx.UnwatchReadiness(second) in effects
    assert h.core.readiness.watched() == frozenset()


def test_a_result_for_an_unwatched_instance_stops_its_probe() -> None:
    h = Harness()
    start_ready(h, 1)
    assert verdict(h, "nobody", True) == [fx.UnwatchReadiness("nobody")]
    (task_id,) = [i.task_id for i in h.instances()]
    assert verdict(h, task_id, False) == [fx.UnwatchReadiness(task_id)]  # outside deployments: not checked
    assert h.instances()[0].ready is True


def test_outside_deployments_a_replacement_is_not_probed() -> None:
    h = Harness()
    (task_id,) = start_ready(h, 1)
    h.status(task_id, "TASK_FAILED")
    h.advance(10)
    (replacement,) = launched(h.offers(offer(resources=BIG)))
    assert watched(h.run([replacement])) == []


def test_status_updates_publish_instance_changed_events() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    (task_id,) = launched(h.offers(offer(resources=BIG)))
    assert published(h.status(task_id, "TASK_STAGING"), "instance_changed_event") == []  # same condition
    (event,) = published(h.status(task_id, "TASK_RUNNING"), "instance_changed_event")
    assert event == {
        "instanceId": task_id,
        "condition": "Running",
        "runSpecId": "/web",
        "agentId": "a-h1",
        "host": "h1",
        "runSpecVersion": h.core.root.apps["/web"].version,
    }
    (gone,) = published(h.status(task_id, "TASK_KILLED"), "instance_changed_event")
    assert gone["condition"] == "Killed"


def test_health_changes_publish_instance_health_changed_events() -> None:
    h = Harness()
    checked = app(instances=1, healthChecks=[{"protocol": "HTTP", "gracePeriodSeconds": 0}])
    h.deploy(checked)
    (task_id,) = launched(h.offers(offer(resources=BIG)))
    h.run([task_id])
    effects = h.core.on_health(task_id, 0, HealthResult(alive=True), h.now)
    (event,) = published(effects, "instance_health_changed_event")
    assert event == {
        "instanceId": task_id,
        "runSpecId": "/web",
        "runSpecVersion": h.core.root.apps["/web"].version,
        "healthy": True,
    }
    assert (
        published(h.core.on_health(task_id, 0, HealthResult(alive=True), h.now), "instance_health_changed_event") == []
    )


# ------------------------------------------------------------------------------------- ports, JSON, the URL


def test_readiness_port_is_the_host_port_of_the_named_port() -> None:
    the_app = ready_app()
    check = the_app.readiness_checks[0]
    assert readiness_port(the_app, check, [31001, 31002]) == 31002
    assert readiness_port(the_app, check, [31001]) is None
    other = ReadinessCheck(port_name="nope")
    assert readiness_port(the_app, other, [31001, 31002]) is None


def test_readiness_json_has_marathons_keys() -> None:
    bare = ReadinessResult(name="warm", task_id="t1", app_id="/web", ready=False)
    assert readiness_json(bare) == {"name": "warm", "taskId": "t1", "ready": False, "lastResponse": None}
    kept = ReadinessResult("warm", "t1", "/web", True, HttpResponse(200, "text/plain", "ok"))
    assert readiness_json(kept)["lastResponse"] == {"status": 200, "contentType": "text/plain", "body": "ok"}


def test_deployments_and_app_info_show_the_results_of_their_app() -> None:
    h = Harness()
    plan, _ = h.deploy(ready_app(1), app("/other", instances=1))
    mine = ReadinessResult(name="warm", task_id="t1", app_id="/web", ready=False)
    body = deployment_json(DeploymentStatus(plan=plan, current_step=1, readiness=(mine,)))
    by_app = {action["app"]: action["readinessCheckResults"] for action in body["currentActions"]}
    assert by_app == {"/web": [readiness_json(mine)], "/other": []}
    info = app_info(h.core.root.apps["/web"], [], embed={"readiness"}, deployment_ids=[plan.id], readiness=[mine])
    assert info["readinessCheckResults"] == [readiness_json(mine)]
    assert "readinessCheckResults" not in app_info(h.core.root.apps["/web"], [], embed=(), deployment_ids=[])


def test_readiness_url() -> None:
    assert readiness_url("h1", 80, ReadinessCheck(path="/ready")) == "http://h1:80/ready"
    assert readiness_url("::1", 443, ReadinessCheck(protocol="HTTPS", path="x")) == "https://[::1]:443/x"


# ------------------------------------------------------------------------------------------- real probes

Results = list[tuple[str, ReadinessResult]]


@pytest.fixture
async def probe_and_results() -> AsyncIterator[tuple[ReadinessProbe, Results]]:
    results: Results = []
    probe = ReadinessProbe(lambda task_id, result: results.append((task_id, result)))
    yield probe, results
    await probe.close()


async def serve(status: Callable[[], int]) -> TestServer:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status(), text=f"at {request.path}")

    application = web.Application()
    application.router.add_get("/{tail:.*}", handler)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    return server


def quick(**fields: Any) -> ReadinessCheck:
    # Interval 0: probe again at once, so the tests wait for answers, not for timers.
    return ReadinessCheck(interval_seconds=0, timeout_seconds=2, **fields)


async def test_probes_until_ready_then_stops(probe_and_results: tuple[ReadinessProbe, Results]) -> None:
    probe, results = probe_and_results
    answers = iter([503, 503, 204, 200])
    server = await serve(lambda: next(answers, 200))
    try:
        probe.watch(
            "t1", "/web", "127.0.0.1", server.port or 0, quick(path="/ready", http_status_codes_for_ready=[204])
        )
        await until(lambda: probe.snapshot().tasks == 0 and results, timeout=5)
        assert [r.ready for _, r in results] == [False, False, True]
        assert all(r.last_response is None and r.app_id == "/web" for _, r in results)
    finally:
        await server.close()


async def test_preserve_last_response_keeps_the_answer(probe_and_results: tuple[ReadinessProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 200)
    try:
        probe.watch("t1", "/web", "127.0.0.1", server.port or 0, quick(path="/warm", preserve_last_response=True))
        await until(lambda: results, timeout=5)
        (_, result), *_ = results
        assert result.ready and result.last_response == HttpResponse(200, "text/plain", "at /warm")
    finally:
        await server.close()


async def test_no_answer_is_not_ready(probe_and_results: tuple[ReadinessProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 200)
    port = server.port or 0
    await server.close()  # nothing listens there any more
    probe.watch("t1", "/web", "127.0.0.1", port, quick(preserve_last_response=True))
    await until(lambda: results, timeout=5)
    assert results[0][1] == ReadinessResult(name="readinessCheck", task_id="t1", app_id="/web", ready=False)


async def test_unwatch_stops_the_reports(probe_and_results: tuple[ReadinessProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 503)
    try:
        probe.watch("t1", "/web", "127.0.0.1", server.port or 0, quick())
        await until(lambda: results, timeout=5)
        probe.unwatch("t1")
        assert probe.snapshot().tasks == 0
        count = len(results)
        probe.watch("t2", "/web", "127.0.0.1", server.port or 0, quick())
        await until(lambda: sum(1 for task_id, _ in results if task_id == "t2") >= 3, timeout=5)
        assert sum(1 for task_id, _ in results if task_id == "t1") == count
    finally:
        await server.close()


async def test_a_failing_consumer_does_not_stop_the_probe() -> None:
    calls: list[str] = []

    def consumer(task_id: str, result: ReadinessResult) -> None:
        calls.append(task_id)
        raise RuntimeError("boom")

    probe = ReadinessProbe(consumer)
    server = await serve(lambda: 503)
    try:
        probe.watch("t1", "/web", "127.0.0.1", server.port or 0, quick())
        await until(lambda: len(calls) >= 2, timeout=5)
    finally:
        await probe.close()
        await server.close()
