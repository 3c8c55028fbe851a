"""MarathonCore when tasks fail, vanish or come back: backoff, lastTaskFailure, unreachable, unknown and orphans."""

from __future__ import annotations

import random

from marathon_core_kit import START_S, Harness, app, killed, launched, of_type, offer, published, status

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.core import MarathonCore
from butte.frameworks.marathon.model import Instance, RootGroup


def test_a_failed_task_is_replaced_only_after_its_backoff_and_recorded_as_the_last_failure() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1, backoffSeconds=10))
    effects = h.status(task_id, "TASK_FAILED")
    assert fx.DeleteInstance(task_id) in effects
    failure = h.core.last_failures["/web"]
    assert (failure.task_id, failure.state, failure.message) == (task_id, "TASK_FAILED", "went TASK_FAILED")
    assert not of_type(effects, fx.Revive), "nothing may launch while the delay runs"
    (entry,) = h.core.queue_entries(h.now)
    assert entry.count == 1 and entry.delay_left_s == 10.0
    h.advance(5.0)
    early = h.offers()
    assert launched(early) == [] and of_type(early, fx.DeclineOffers)
    h.advance(5.0)
    assert of_type(h.tick(), fx.Revive), "the delay ran out: ask for offers again"
    assert len(launched(h.offers())) == 1


def test_each_further_failure_lengthens_the_backoff() -> None:
    h = Harness()
    (first,) = h.start(app(instances=1, backoffSeconds=10, backoffFactor=2))
    h.status(first, "TASK_FAILED")
    h.advance(10.0)
    h.tick()
    (second,) = launched(h.offers())
    h.status(second, "TASK_FAILED")
    assert h.core.queue_entries(h.now)[0].delay_left_s == 20.0


def test_task_finished_counts_for_backoff_but_is_not_a_failure_record() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1, backoffSeconds=30))
    h.status(task_id, "TASK_FINISHED")
    assert h.core.delays.delay_left_s("/web", h.now) == 30.0
    assert launched(h.offers()) == []
    assert "/web" not in h.core.last_failures


def test_task_killed_from_outside_is_replaced_at_once() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1, backoffSeconds=30))
    effects = h.status(task_id, "TASK_KILLED")
    assert of_type(effects, fx.Revive)
    assert h.core.delays.delay_left_s("/web", h.now) == 0.0
    assert len(launched(h.offers())) == 1
    assert "/web" not in h.core.last_failures


def test_a_task_marathon_killed_does_not_count_for_backoff_whatever_its_end() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1, backoffSeconds=30))
    h.core.kill([task_id], wipe=False, now=h.now)
    h.status(task_id, "TASK_FAILED")
    assert h.core.delays.delay_left_s("/web", h.now) == 0.0


def test_kill_without_scale_gets_a_replacement() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1))
    result, effects = h.core.kill([task_id], wipe=False, now=h.now)
    assert [i.task_id for i in result.killed] == [task_id]
    assert killed(effects) == [task_id]
    assert len(launched(h.offers())) == 1, "the replacement does not wait for the old task's end"


def test_kill_with_wipe_forgets_the_instance_at_once() -> None:
    h = Harness()
    (task_id,) = h.start(app(instances=1))
    _, effects = h.core.kill([task_id], wipe=True, now=h.now)
    assert fx.DeleteInstance(task_id) in effects and killed(effects) == [task_id]
    assert h.core.book.get(task_id) is None


def test_kill_marked_kills_without_asking_for_a_replacement_yet() -> None:
    h = Harness()
    task_ids = h.start(app(instances=2))
    effects = h.core.kill_marked(task_ids[:1])
    assert killed(effects) == task_ids[:1] and not of_type(effects, fx.Revive)


def _unreachable(h: Harness, strategy: dict[str, int]) -> str:
    (task_id,) = h.start(app(instances=1, unreachableStrategy=strategy))
    return task_id


def test_unreachable_with_0_0_is_replaced_at_once_and_expunged_and_killed() -> None:
    h = Harness()
    old = _unreachable(h, {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    effects = h.status(old, "TASK_UNREACHABLE")
    assert of_type(effects, fx.Revive)
    (new,) = launched(h.offers())
    expunged = h.tick()
    assert fx.DeleteInstance(old) in expunged and old in killed(expunged)
    assert [i.task_id for i in h.instances()] == [new]
    # Should the old task come back, it is unknown now: killed.
    assert killed(h.core.on_status(status(old, "TASK_RUNNING", agent_id="a-h1"), h.now)) == [old]


def test_unreachable_with_60_600_waits_then_replaces_and_kills_the_surplus_when_the_old_one_returns() -> None:
    h = Harness()
    old = _unreachable(h, {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600})
    h.status(old, "TASK_UNREACHABLE")
    assert launched(h.offers()) == []
    h.advance(59.0)
    assert not of_type(h.tick(), fx.Revive)
    assert launched(h.offers()) == []
    h.advance(1.0)
    assert of_type(h.tick(), fx.Revive)
    (new,) = launched(h.offers())
    h.advance(1.0)
    h.status(new, "TASK_RUNNING")
    h.advance(100.0)
    back = h.status(old, "TASK_RUNNING")
    assert len(killed(back)) == 1, "one of the two must go"
    h.finish_kills(back)
    assert len(h.alive()) == 1 and len(h.instances()) == 1
    h.advance(1000.0)
    assert killed(h.tick()) == [] and len(h.alive()) == 1


def test_an_unreachable_instance_is_expunged_after_expunge_after_seconds() -> None:
    h = Harness()
    old = _unreachable(h, {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600})
    h.status(old, "TASK_UNREACHABLE")
    h.advance(60.0)
    h.tick()
    launched(h.offers())
    h.advance(539.0)
    assert h.core.book.get(old) is not None and fx.DeleteInstance(old) not in h.tick()
    h.advance(1.0)
    assert fx.DeleteInstance(old) in h.tick()


def test_a_running_status_of_an_unknown_task_kills_it_and_a_terminal_one_is_ignored() -> None:
    h = Harness()
    effects = h.core.on_status(status("ghost", "TASK_RUNNING", agent_id="a-h9"), h.now)
    assert of_type(effects, fx.KillTask) == [fx.KillTask("ghost", "a-h9")]
    assert published(effects, "unknown_instance_terminated_event")[0]["instanceId"] == "ghost"
    assert h.core.on_status(status("ghost", "TASK_FAILED"), h.now) == []
    assert h.core.on_status(status("ghost", "TASK_KILLED"), h.now) == []


def _instance(task_id: str, app_id: str) -> Instance:
    return Instance(
        task_id=task_id,
        app_id=app_id,
        version="v",
        config_version="v",
        agent_id="a-h1",
        host="h1",
        staged_at=START_S,
        state="TASK_RUNNING",
    )


def test_instances_of_an_app_no_longer_in_the_root_are_killed() -> None:
    orphans = [_instance("t1", "/gone"), _instance("t2", "/gone")]
    core = MarathonCore(root=RootGroup(), instances=orphans, rng=random.Random(1))
    assert sorted(killed(core.tick(START_S))) == ["t1", "t2"]
    assert killed(core.tick(START_S + 1)) == [], "killed once"


def test_subscribing_reconciles_every_known_task_then_asks_implicitly() -> None:
    h = Harness()
    task_ids = h.start(app(instances=2))
    effects = h.core.on_subscribed()
    reconciles = of_type(effects, fx.ReconcileTasks)
    assert [sorted(reconciles[0].tasks), reconciles[1].tasks] == [sorted((t, "a-h1") for t in task_ids), ()]
    assert of_type(effects, fx.Revive)


def test_subscribing_with_no_tasks_still_asks_implicitly() -> None:
    core = MarathonCore(root=RootGroup(), rng=random.Random(1))
    assert of_type(core.on_subscribed(), fx.ReconcileTasks) == [fx.ReconcileTasks(()), fx.ReconcileTasks(())]


def test_a_lost_task_of_a_stopped_app_still_ends_the_stop() -> None:
    h = Harness()
    task_ids = h.start(app(instances=2))
    h.deploy(removed=["/web"])
    h.status(task_ids[0], "TASK_KILLED")
    assert published(h.status(task_ids[1], "TASK_LOST"), "deployment_success")


def test_health_kill_of_an_http_checked_instance_counts_as_a_failure() -> None:
    from butte.frameworks.marathon.model import HealthResult

    h = Harness()
    check = {"protocol": "HTTP", "path": "/", "portIndex": 0, "maxConsecutiveFailures": 2}
    h.deploy(app(instances=1, healthChecks=[check], backoffSeconds=5))
    (task_id,) = launched(h.offers())
    h.run([task_id])
    h.core.on_health(task_id, 0, HealthResult(alive=True), h.now)
    bad = HealthResult(alive=False, consecutive_failures=3, last_failure=h.now, last_failure_cause="503")
    effects = h.core.on_health(task_id, 0, bad, h.now)
    assert killed(effects) == [task_id]
    assert published(effects, "unhealthy_instance_kill_event")[0]["reason"] == "503"
    assert h.core.delays.delay_left_s("/web", h.now) == 5.0
    h.status(task_id, "TASK_KILLED")
    assert launched(h.offers(offer())) == []
