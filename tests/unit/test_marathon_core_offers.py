"""MarathonCore and offers: Revive/Suppress, declines and their reasons, shared offers, placement constraints."""

from __future__ import annotations

from marathon_core_kit import BIG, Harness, app, launched, of_type, offer

from butte.core.resources import Resources
from butte.frameworks.marathon import effects as fx
from butte.scheduler.tasks import offer_resources
from butte.wire.mesos import TaskInfo


def test_suppress_once_nothing_is_left_to_launch_and_revive_when_demand_appears() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    (task_id,) = launched(h.offers())
    effects = h.status(task_id, "TASK_RUNNING")
    assert of_type(effects, fx.Suppress) == [fx.Suppress()]
    assert not of_type(h.tick(), fx.Suppress), "suppressed once, not on every change"
    _, scaled = h.deploy(app(instances=2))
    assert of_type(scaled, fx.Revive) and not of_type(scaled, fx.Suppress)


def test_a_new_deployment_revives_even_when_demand_did_not_grow() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    assert of_type(h.deploy(app("/other"))[1], fx.Revive)


def test_offers_nothing_fits_are_declined_and_say_why_in_the_queue() -> None:
    h = Harness()
    h.deploy(app(instances=1, cpus=4))
    first = offer("h1", "cpus:1;mem:1024;ports:[31000-31010]")
    second = offer("h2", "cpus:2;mem:1024;ports:[31000-31010]")
    effects = h.offers(first, second)
    assert launched(effects) == []
    (decline,) = of_type(effects, fx.DeclineOffers)
    assert decline.offer_ids == (first.id.value, second.id.value) and decline.refuse_seconds > 0
    (entry,) = h.core.queue_entries(h.now)
    assert (entry.count, entry.processed_offers, entry.unused_offers) == (1, 2, 2)
    assert dict(entry.rejection_counts)["InsufficientCpus"] == 2
    assert [u.hostname for u in entry.last_unused_offers] == ["h1", "h2"]
    assert all("InsufficientCpus" in u.reasons for u in entry.last_unused_offers)


def test_with_no_demand_every_offer_is_declined() -> None:
    h = Harness()
    effects = h.offers(offer(), offer())
    assert [type(e) for e in effects] == [fx.DeclineOffers] and len(effects[0].offer_ids) == 2  # type: ignore[union-attr]


def test_the_queue_forgets_an_app_once_its_demand_is_met() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    (task_id,) = launched(h.offers())
    h.status(task_id, "TASK_RUNNING")
    assert h.core.queue_entries(h.now) == []


def _task_resources(task: TaskInfo) -> Resources:
    from butte.wire.resources import resources_from_wire

    return resources_from_wire(task.resources)


def test_two_apps_share_one_offer_without_double_counting_it() -> None:
    h = Harness()
    h.deploy(app("/a", instances=1, cpus=1, mem=128), app("/b", instances=1, cpus=1, mem=128))
    shared = offer("h1", "cpus:2;mem:256;ports:[31000-31001]")
    effects = h.offers(shared)
    (launch,) = of_type(effects, fx.LaunchTasks)
    assert launch.offer_id == shared.id.value and len(launch.tasks) == 2
    assert {i.app_id for i in h.core.book} == {"/a", "/b"}
    used = _task_resources(launch.tasks[0]) + _task_resources(launch.tasks[1])
    assert used.scalar("cpus") == 2 and used.scalar("mem") == 256
    assert used.ranges("ports") == offer_resources(shared).ranges("ports"), "each task took its own port"


def test_an_offer_too_small_for_two_apps_serves_one_and_the_other_waits() -> None:
    h = Harness()
    h.deploy(app("/a", instances=1, cpus=1), app("/b", instances=1, cpus=1))
    effects = h.offers(offer("h1", "cpus:1.5;mem:1024;ports:[31000-31010]"))
    assert len(launched(effects)) == 1
    waiting = {e.app.id: e for e in h.core.queue_entries(h.now) if e.count > 0}
    assert len(waiting) == 1
    (entry,) = waiting.values()
    assert dict(entry.rejection_counts).get("InsufficientCpus") == 1


def test_unique_hostname_spreads_instances_over_offers_from_different_hosts() -> None:
    h = Harness()
    h.deploy(app(instances=3, constraints=[["hostname", "UNIQUE"]]))
    assert len(launched(h.offers(offer("h1", BIG)))) == 1
    again = h.offers(offer("h1", BIG))
    assert launched(again) == [] and of_type(again, fx.DeclineOffers)
    (entry,) = h.core.queue_entries(h.now)
    assert "UnfulfilledConstraint" in dict(entry.rejection_counts)
    assert len(launched(h.offers(offer("h2", BIG), offer("h3", BIG)))) == 2
    assert sorted(i.host for i in h.instances()) == ["h1", "h2", "h3"]


def test_unique_hostname_in_one_batch_of_offers_from_the_same_host() -> None:
    h = Harness()
    h.deploy(app(instances=2, constraints=[["hostname", "UNIQUE"]]))
    effects = h.offers(offer("h1", BIG), offer("h1", BIG))
    assert len(launched(effects)) == 1, "the launch from the first offer counts for the second"


def test_a_launch_uses_the_offer_and_agent_it_came_from() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    the_offer = offer("h7", BIG)
    (launch,) = of_type(h.offers(the_offer), fx.LaunchTasks)
    assert launch.offer_id == the_offer.id.value
    assert launch.tasks[0].agent_id.value == "a-h7"
    (instance,) = h.instances()
    assert (instance.host, instance.agent_id, instance.state) == ("h7", "a-h7", "TASK_STAGING")
