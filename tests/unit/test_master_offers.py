"""Offers in the master core: made from allocations, declined with filters, timed out, rescinded, revived."""

from __future__ import annotations

import pytest
from test_master_kit import (
    START,
    Master,
    executor_info,
    executor_task,
    framework_info,
    offers_in,
    resources_of,
    to_framework,
)

from butte.core.errors import ValidationError
from butte.core.resources import Resources
from butte.master import agents, frameworks, offers
from butte.master.effects import Allocate
from butte.wire import mesos


def test_an_agents_resources_are_offered_whole_to_a_subscribed_framework() -> None:
    master = Master()
    agent_id = master.add_agent("cpus:2;mem:1024;ports:[31000-31009]", hostname="node7")
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    assert offer.id.value == "M-O0"
    assert offer.framework_id.value == framework_id
    assert offer.agent_id.value == agent_id == "M-S0"
    assert offer.hostname == "node7"
    assert offer.url is not None and offer.url.address.port == 5051 and offer.url.path == "/slave(1)"
    assert resources_of(offer) == Resources.parse("cpus:2;mem:1024;ports:[31000-31009]")
    assert master.state.offers["M-O0"].agent_id == agent_id


def test_offer_ids_count_up() -> None:
    master = Master()
    first = master.add_agent()
    second = master.add_agent(hostname="node2")
    framework_id, _ = master.subscribe()
    made = offers_in(master.allocate(), framework_id)
    assert sorted(o.id.value for o in made) == ["M-O0", "M-O1"]
    assert sorted(o.agent_id.value for o in made) == sorted([first, second])


def test_plain_frameworks_get_no_allocation_info() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(framework_info(role="web"))
    offer = master.offer(framework_id)
    assert offer.allocation_info is None
    assert all(r.allocation_info is None for r in offer.resources)
    assert {r.role for r in offer.resources} == {"*"}


def test_multi_role_frameworks_get_allocation_info_on_offer_and_resources() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(framework_info(roles=["web"], capabilities=["MULTI_ROLE"]))
    offer = master.offer(framework_id)
    assert offer.allocation_info == mesos.AllocationInfo(role="web")
    assert all(r.allocation_info == mesos.AllocationInfo(role="web") for r in offer.resources)


def test_nothing_is_offered_twice() -> None:
    master = Master()
    master.add_agent()
    first, _ = master.subscribe(framework_info("a"))
    master.offer(first)
    second, _ = master.subscribe(framework_info("b"))
    assert offers_in(master.allocate()) == []
    assert second not in {o.framework_id for o in master.state.offers.values()}


def test_decline_filters_the_agent_for_refuse_seconds() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    master.decline(framework_id, [offer.id.value], refuse_seconds=60.0)
    assert offer.id.value not in master.state.offers
    master.now = START + 59.0
    assert offers_in(master.allocate()) == []
    master.now = START + 60.0
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_declined_resources_go_to_another_framework_meanwhile() -> None:
    master = Master()
    master.add_agent()
    first, _ = master.subscribe(framework_info("a"))
    offer = master.offer(first)
    second, _ = master.subscribe(framework_info("b"))
    master.decline(first, [offer.id.value], refuse_seconds=60.0)
    assert [o.framework_id.value for o in offers_in(master.allocate())] == [second]


def test_decline_without_filters_refuses_for_five_seconds() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    master.decline(framework_id, [master.offer(framework_id).id.value])
    master.now = START + 4.9
    assert offers_in(master.allocate()) == []
    master.now = START + 5.0
    assert len(offers_in(master.allocate())) == 1


def test_decline_with_zero_refuse_seconds_is_offered_again_at_once() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    master.decline(framework_id, [master.offer(framework_id).id.value], refuse_seconds=0.0)
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_decline_ignores_unknown_and_foreign_offers() -> None:
    master = Master()
    master.add_agent()
    owner, _ = master.subscribe(framework_info("a"))
    other, _ = master.subscribe(framework_info("b"))
    offer = offers_in(master.allocate())[0]
    holder = offer.framework_id.value
    intruder = other if holder == owner else owner
    master.decline(intruder, [offer.id.value, "M-O999"], refuse_seconds=60.0)
    assert offer.id.value in master.state.offers


def test_refuse_seconds_is_capped_at_a_year_and_nan_is_refused() -> None:
    assert offers.refuse_seconds(mesos.Filters(refuse_seconds=1e12)) == offers.MAX_REFUSE_SECONDS
    assert offers.refuse_seconds(mesos.Filters(refuse_seconds=-3.0)) == 0.0
    assert offers.refuse_seconds(None) == 5.0
    with pytest.raises(ValidationError):
        offers.refuse_seconds(mesos.Filters(refuse_seconds=float("nan")))


def test_revive_clears_filters() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    master.decline(framework_id, [master.offer(framework_id).id.value], refuse_seconds=3600.0)
    assert offers_in(master.allocate()) == []
    effects = frameworks.revive(master.state, master.framework(framework_id), None)
    assert Allocate() in effects
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_suppress_keeps_outstanding_offers_but_makes_no_new_ones() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    frameworks.suppress(master.state, master.framework(framework_id), None)
    assert offer.id.value in master.state.offers
    master.decline(framework_id, [offer.id.value], refuse_seconds=0.0)
    assert offers_in(master.allocate()) == []


def test_offer_timeout_rescinds_stale_offers() -> None:
    master = Master(offer_timeout_s=30.0)
    master.add_agent()
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    assert offers.expire_offers(master.state, START + 29.9) == []
    effects = offers.expire_offers(master.state, START + 30.0)
    rescinds = to_framework(effects, framework_id, "RESCIND")
    assert len(rescinds) == 1 and rescinds[0].rescind is not None
    assert rescinds[0].rescind.offer_id == offer.id
    assert master.state.offers == {}
    assert master.framework(framework_id).offers == set()
    # Rescinded resources carry no filter: the framework is offered them again.
    master.now = START + 30.0
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_without_offer_timeout_offers_never_expire() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    master.offer(framework_id)
    assert offers.expire_offers(master.state, START + 1e9) == []
    assert len(master.state.offers) == 1


def test_agent_disconnect_rescinds_its_offers() -> None:
    master = Master()
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    stream = master.state.agents[agent_id].stream_id
    effects = agents.disconnect(master.state, agent_id, stream, master.now)
    assert [e.rescind.offer_id for e in to_framework(effects, framework_id, "RESCIND") if e.rescind] == [offer.id]
    assert offers_in(master.allocate()) == []


def test_offers_list_the_frameworks_executors_on_the_agent() -> None:
    master = Master()
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe()
    master.launch(framework_id, executor_task("t1", agent_id, executor_info("e1"), "cpus:1;mem:128"))
    master.now = START + 5.0  # the unused rest of the agent comes back after the default 5 s filter
    offer = master.offer(framework_id)
    assert [e.value for e in offer.executor_ids] == ["e1"]
