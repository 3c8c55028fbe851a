"""MarathonCore driven by hand: starting, scaling, restarting and stopping apps through deployments."""

from __future__ import annotations

from typing import Any

import pytest
from marathon_core_kit import BIG, Harness, app, killed, launched, of_type, offer, published

from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.control import LockedByDeployments
from butte.frameworks.marathon.model import HealthResult


def test_a_new_app_launches_its_instances_over_several_offers_and_its_start_finishes_once_all_run() -> None:
    h = Harness()
    plan, effects = h.deploy(app(instances=3))
    assert [a.kind for s in plan.steps for a in s.actions] == ["StartApplication"]
    assert of_type(effects, fx.SaveDeployment) == [fx.SaveDeployment(plan, 1)]
    assert of_type(effects, fx.Revive)
    first = h.offers(offer("h1", "cpus:1;mem:1024;ports:[31000-31010]"))
    # The instances are saved before the LAUNCH that creates them.
    assert [type(e) for e in first] == [fx.SaveInstances, fx.LaunchTasks]
    assert len(launched(first)) == 2
    second = h.offers(offer("h2", BIG))
    assert len(launched(second)) == 1
    task_ids = launched(first) + launched(second)
    assert {i.task_id for i in h.instances()} == set(task_ids)
    assert not published(h.run(task_ids[:2]), "deployment_success")
    assert len(h.core.deployments) == 1
    last = h.run(task_ids[2:])
    assert published(last, "deployment_success")[0]["id"] == plan.id
    assert fx.DeleteDeployment(plan.id) in last
    assert len(h.core.deployments) == 0


def test_the_start_step_waits_for_running_not_staging() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    (task_id,) = launched(h.offers())
    assert not published(h.status(task_id, "TASK_STARTING"), "deployment_success")
    assert published(h.status(task_id, "TASK_RUNNING"), "deployment_success")


def test_scale_up_launches_the_missing_instances_and_finishes_when_they_run() -> None:
    h = Harness()
    h.start(app(instances=2))
    plan, effects = h.deploy(app(instances=4))
    assert [a.kind for s in plan.steps for a in s.actions] == ["ScaleApplication"]
    assert of_type(effects, fx.Revive)
    new = launched(h.offers())
    assert len(new) == 2
    assert published(h.run(new), "deployment_success")
    assert len(h.alive()) == 4


def _start_one_by_one(h: Harness, count: int, **fields: Any) -> list[str]:
    """Start an app, one instance per offer a second apart, so that their staged times order them."""
    h.deploy(app(instances=count, **fields))
    task_ids = []
    for _ in range(count):
        h.advance(1.0)
        task_ids += launched(h.offers(offer("h1", "cpus:0.5;mem:64;ports:[31000-31010]")))
    h.run(task_ids)
    assert len(h.core.deployments) == 0 and len(task_ids) == count
    return task_ids


def test_scale_down_kills_the_youngest_first_and_finishes_on_their_terminal_status() -> None:
    h = Harness()
    oldest, middle, youngest = _start_one_by_one(h, 3)
    plan, effects = h.deploy(app(instances=1))
    assert sorted(killed(effects)) == sorted([middle, youngest])
    assert len(h.core.deployments) == 1
    more = h.status(youngest, "TASK_KILLED")
    assert not published(more, "deployment_success")
    assert published(h.status(middle, "TASK_KILLED"), "deployment_success")[0]["id"] == plan.id
    assert [i.task_id for i in h.instances()] == [oldest]


def test_scale_down_with_oldest_first_kills_the_oldest() -> None:
    h = Harness()
    oldest, middle, _ = _start_one_by_one(h, 3, killSelection="OLDEST_FIRST")
    _, effects = h.deploy(app(instances=1, killSelection="OLDEST_FIRST"))
    assert sorted(killed(effects)) == sorted([oldest, middle])


def test_scale_down_kills_staging_instances_before_running_ones() -> None:
    h = Harness()
    running = _start_one_by_one(h, 2)
    h.deploy(app(instances=3))
    h.advance(1.0)
    (staging,) = launched(h.offers())
    _, effects = h.deploy(app(instances=2), force=True)
    assert killed(effects) == [staging]
    assert all(not h.core.book.get(t).killing for t in running)  # type: ignore[union-attr]


def test_kills_carry_the_apps_grace_period() -> None:
    h = Harness()
    h.start(app(instances=1, taskKillGracePeriodSeconds=7))
    _, effects = h.deploy(removed=["/web"])
    assert of_type(effects, fx.KillTask)[0].grace_period_s == 7


def _restart(h: Harness, strategy: dict[str, float], count: int = 2, **fields: Any) -> tuple[list[str], str]:
    old = h.start(app(instances=count, upgradeStrategy=strategy, **fields), healthy=True if fields else None)
    plan, _ = h.restart("/web")
    return old, plan.id


def test_restart_1_1_launches_all_new_then_kills_an_old_per_new_ready() -> None:
    h = Harness()
    old, plan_id = _restart(h, {"minimumHealthCapacity": 1, "maximumOverCapacity": 1})
    new = launched(h.offers())
    assert len(new) == 2
    assert killed(h.run(new[:1])) and len([i for i in h.alive() if i.task_id in old]) == 1
    kills = killed(h.run(new[1:]))
    assert len([i for i in h.alive() if i.task_id in old]) == 0
    assert len(kills) == 1
    kill_effects: list[fx.Effect] = [fx.KillTask(t, None) for t in old]
    assert published(h.finish_kills(kill_effects), "deployment_success")[0]["id"] == plan_id
    assert {i.task_id for i in h.instances()} == set(new)


def test_restart_1_0_goes_one_at_a_time_within_instances_plus_one() -> None:
    h = Harness()
    old, plan_id = _restart(h, {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}, count=3)
    seen_new: list[str] = []
    for _ in range(3):
        new = launched(h.offers())
        assert len(new) == 1, "maxCapacity is instances + 1 while old instances remain"
        assert len(h.alive()) <= 4
        seen_new += new
        h.finish_kills(h.run(new))
    assert not h.core.deployments.get(plan_id)
    assert {i.task_id for i in h.instances()} == set(seen_new)
    assert not set(old) & {i.task_id for i in h.instances()}


def test_restart_0_0_kills_every_old_instance_first() -> None:
    h = Harness()
    old, _ = _restart(h, {"minimumHealthCapacity": 0, "maximumOverCapacity": 0})
    assert all(h.core.book.get(t).killing for t in old)  # type: ignore[union-attr]
    assert launched(h.offers()) == [], "no room below maxCapacity until the old ones are gone"
    h.finish_kills([fx.KillTask(t, None) for t in old])
    assert len(launched(h.offers())) == 2


def test_restart_with_mesos_health_checks_waits_for_healthy_new_instances() -> None:
    h = Harness()
    check = {"protocol": "MESOS_TCP", "portIndex": 0}
    old, plan_id = _restart(h, {"minimumHealthCapacity": 1, "maximumOverCapacity": 1}, healthChecks=[check])
    new = launched(h.offers())
    assert killed(h.run(new)) == [], "running is not enough while health is unknown"
    assert killed(h.run(new, healthy=False)) == []
    assert len(killed(h.run(new[:1], healthy=True))) == 1
    assert len(killed(h.run(new[1:], healthy=True))) == 1
    assert published(h.finish_kills([fx.KillTask(t, None) for t in old]), "deployment_success")[0]["id"] == plan_id


def test_restart_with_http_health_checks_waits_for_marathons_own_probe() -> None:
    h = Harness()
    check = {"protocol": "HTTP", "path": "/", "portIndex": 0}
    h.deploy(app(instances=1, healthChecks=[check]))
    old = launched(h.offers())
    watch = of_type(h.run(old), fx.WatchHealth)
    assert [w.instance.task_id for w in watch] == old
    assert len(h.core.deployments) == 1, "not healthy yet"
    effects = h.core.on_health(old[0], 0, HealthResult(alive=True), h.now)
    assert published(effects, "health_status_changed_event")[0]["alive"] is True
    assert published(effects, "deployment_success")
    h.restart("/web")
    (new,) = launched(h.offers())
    running = h.status(new, "TASK_RUNNING")
    assert of_type(running, fx.WatchHealth)[0].instance.task_id == new
    assert killed(running) == []
    assert killed(h.core.on_health(new, 0, HealthResult(alive=False), h.now)) == []
    assert killed(h.core.on_health(new, 0, HealthResult(alive=True), h.now)) == old


def test_stopping_an_app_kills_everything_and_waits_for_terminal_statuses() -> None:
    h = Harness()
    task_ids = h.start(app(instances=2))
    plan, effects = h.deploy(removed=["/web"])
    assert [a.kind for s in plan.steps for a in s.actions] == ["StopApplication"]
    assert sorted(killed(effects)) == sorted(task_ids)
    assert not published(h.status(task_ids[0], "TASK_KILLED"), "deployment_success")
    # TASK_KILLING is not the end: the stop still waits.
    assert not published(h.status(task_ids[1], "TASK_KILLING"), "deployment_success")
    last = h.status(task_ids[1], "TASK_KILLED")
    assert published(last, "app_terminated_event") == [{"appId": "/web"}]
    assert published(last, "deployment_success")
    assert len(h.core.book) == 0


def test_a_deploy_touching_a_locked_app_is_refused_and_force_cancels_the_holder() -> None:
    h = Harness()
    first, _ = h.deploy(app(instances=2))
    with pytest.raises(LockedByDeployments):
        h.deploy(app(instances=3))
    assert h.core.deployments.get(first.id) is not None
    second, effects = h.deploy(app(instances=3), force=True)
    assert published(effects, "deployment_failed")[0]["id"] == first.id
    assert fx.DeleteDeployment(first.id) in effects
    assert [run.plan.id for run in h.core.deployments] == [second.id]
    assert len(launched(h.offers())) == 3


def test_a_deploy_of_another_app_is_not_locked() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    plan, _ = h.deploy(app("/other"))
    assert len(h.core.deployments) == 2 and plan.affected_apps == ("/other",)


def test_forced_cancel_stops_the_deployment_where_it_is() -> None:
    h = Harness()
    h.start(app(instances=1))
    plan, _ = h.deploy(app(instances=3))
    launched(h.offers(offer("h1", "cpus:0.5;mem:64;ports:[31000-31010]")))
    rollback, effects = h.core.cancel_deployment(plan.id, force=True, rollback_id="r", version="v", now=h.now)
    assert rollback is None
    assert published(effects, "deployment_failed")[0]["id"] == plan.id
    assert len(h.core.deployments) == 0
    assert h.core.root.apps["/web"].instances == 3, "the target stays; the app is simply no longer deploying"
    assert h.core.queue_entries(h.now)[0].count == 1


def test_cancel_rolls_back_to_the_original_app_with_a_new_deployment() -> None:
    h = Harness()
    h.start(app(instances=1))
    plan, _ = h.deploy(app(instances=3))
    extra = launched(h.offers())
    assert len(extra) == 2
    h.run(extra[:1])
    rollback, effects = h.core.cancel_deployment(plan.id, force=False, rollback_id="r", version="v2", now=h.now)
    assert rollback is not None and rollback.id == "r"
    assert published(effects, "deployment_failed")[0]["id"] == plan.id
    assert h.core.root.apps["/web"].instances == 1
    assert len(killed(effects)) == 2, "the rollback scales back down"
    assert published(h.finish_kills(effects), "deployment_success")[0]["id"] == "r"
    assert len(h.alive()) == 1


def test_cancelling_the_start_of_a_new_app_removes_it() -> None:
    h = Harness()
    plan, _ = h.deploy(app(instances=2))
    task_ids = launched(h.offers())
    _, effects = h.core.cancel_deployment(plan.id, force=False, rollback_id="r", version="v2", now=h.now)
    assert "/web" not in h.core.root.apps
    assert sorted(killed(effects)) == sorted(task_ids)
    assert published(h.finish_kills(effects), "deployment_success")


def test_cancel_of_an_unknown_deployment_is_not_found() -> None:
    from butte.core.errors import NotFound

    with pytest.raises(NotFound):
        Harness().core.cancel_deployment("nope", force=True, rollback_id="r", version="v", now=0.0)
