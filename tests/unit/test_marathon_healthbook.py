"""Marathon-side health checks in the core: probes restart after a restart, verdicts kill, unreachable spared."""

from __future__ import annotations

from marathon_core_kit import BIG, Harness, app, killed, launched, of_type, offer, published, status

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.core import MarathonCore
from butte.frameworks.marathon.model import HealthResult
from butte.wire.marathon import App

HTTP_CHECK = {"protocol": "HTTP", "portIndex": 0, "maxConsecutiveFailures": 2}
FAILING = HealthResult(alive=False, consecutive_failures=3, last_failure_cause="503")


def start_healthy(h: Harness, the_app: App) -> list[str]:
    """Deploy, launch and run the app, every Marathon-side check of every task passing."""
    h.deploy(the_app)
    task_ids = launched(h.offers(offer(resources=BIG)))
    h.run(task_ids)
    for task_id in task_ids:
        for index in range(len(the_app.health_checks)):
            h.core.on_health(task_id, index, HealthResult(alive=True), h.now)
    assert len(h.core.deployments) == 0
    return task_ids


def test_a_new_core_probes_running_instances_again_when_reconciliation_reports_them() -> None:
    h = Harness()
    task_ids = start_healthy(h, app(instances=2, healthChecks=[HTTP_CHECK]))
    # A restarted Marathon: the same state from the store, no probe running yet.
    restarted = MarathonCore(root=h.core.root, instances=list(h.core.book), rng=h.core.launcher._rng)
    for task_id in task_ids:
        watch = of_type(restarted.on_status(status(task_id, "TASK_RUNNING"), h.now), fx.WatchHealth)
        assert [w.instance.task_id for w in watch] == [task_id]
        assert of_type(restarted.on_status(status(task_id, "TASK_RUNNING"), h.now), fx.WatchHealth) == []


def test_a_failing_check_kills_the_instance_once_and_counts_as_a_failure() -> None:
    h = Harness()
    (task_id,) = start_healthy(h, app(instances=1, healthChecks=[HTTP_CHECK]))
    effects = h.core.on_health(task_id, 0, FAILING, h.now)
    assert killed(effects) == [task_id]
    assert published(effects, "unhealthy_instance_kill_event")[0]["reason"] == "503"
    assert killed(h.core.on_health(task_id, 0, FAILING, h.now)) == [], "already being killed"
    assert h.core.delays.delay_left_s("/web", h.now) > 0


def test_an_unreachable_instance_is_not_killed_for_its_checks() -> None:
    h = Harness()
    the_app = app(
        instances=1,
        healthChecks=[HTTP_CHECK],
        unreachableStrategy={"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600},
    )
    (task_id,) = start_healthy(h, the_app)
    h.status(task_id, "TASK_UNREACHABLE")
    assert killed(h.core.on_health(task_id, 0, FAILING, h.now)) == []


def test_results_are_per_check_and_the_instance_is_healthy_only_if_every_check_is() -> None:
    h = Harness()
    checks = [HTTP_CHECK, {"protocol": "TCP", "portIndex": 0}]
    (task_id,) = start_healthy(h, app(instances=1, healthChecks=checks))
    h.core.on_health(task_id, 0, HealthResult(alive=True), h.now)
    h.core.on_health(task_id, 1, HealthResult(alive=False, consecutive_failures=1), h.now)
    assert [r.alive for r in h.core.health_results(task_id)] == [True, False]
    assert h.core.book.get(task_id).healthy is False  # type: ignore[union-attr]


def test_a_failed_probe_publishes_failed_health_check_event() -> None:
    h = Harness()
    (task_id,) = start_healthy(h, app(instances=1, healthChecks=[HTTP_CHECK]))
    effects = h.core.on_health(task_id, 0, HealthResult(alive=False, consecutive_failures=1), h.now)
    (event,) = published(effects, "failed_health_check_event")
    assert event["taskId"] == task_id and event["healthCheck"]["protocol"] == "HTTP"


def test_adding_and_removing_checks_publishes_their_events() -> None:
    h = Harness()
    start_healthy(h, app(instances=1))
    _, effects = h.deploy(app(instances=1, healthChecks=[HTTP_CHECK]))
    (added,) = published(effects, "add_health_check_event")
    assert added["appId"] == "/web" and added["healthCheck"]["maxConsecutiveFailures"] == 2
    _, effects = h.deploy(app(instances=1), force=True)
    assert [e["appId"] for e in published(effects, "remove_health_check_event")] == ["/web"]
