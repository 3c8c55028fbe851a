"""Framework lifecycle in the master core: subscribe, failover, validation, disconnect, teardown, update."""

from __future__ import annotations

import pytest
from test_master_kit import (
    START,
    Master,
    command_task,
    framework_info,
    ident,
    offers_in,
    to_agent,
    to_framework,
)

from butte.core.errors import Forbidden, NotFound, ValidationError
from butte.master import frameworks
from butte.master.effects import Allocate, CloseFrameworkStream
from butte.master.model import FrameworkLink
from butte.wire import mesos
from butte.wire.scheduler import UpdateFramework


def test_new_frameworks_are_numbered_after_the_master_id() -> None:
    master = Master()
    first, _ = master.subscribe(framework_info("a"))
    second, _ = master.subscribe(framework_info("b"))
    assert (first, second) == ("M-0000", "M-0001")
    assert master.framework(first).info.id == ident(first)


def test_subscribed_comes_first_then_a_heartbeat_then_allocation() -> None:
    master = Master()
    framework_id, effects = master.subscribe()
    events = to_framework(effects, framework_id)
    assert [e.type for e in events] == ["SUBSCRIBED", "HEARTBEAT"]
    subscribed = events[0].subscribed
    assert subscribed is not None
    assert subscribed.framework_id.value == framework_id
    assert subscribed.heartbeat_interval_seconds == 15.0
    assert subscribed.master_info is not None and subscribed.master_info.id == "M"
    assert subscribed.master_info.ip == 16777343  # 127.0.0.1 read as a little-endian integer
    assert any(isinstance(e, Allocate) for e in effects)


def test_resubscribe_replaces_the_old_stream_and_takes_back_its_offers() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(stream="old")
    offer = master.offer(framework_id)
    info = framework_info(framework_id=framework_id)
    again, effects = master.subscribe(info, stream="new")
    assert again == framework_id
    assert CloseFrameworkStream(framework_id, "old", "Framework failed over") in effects
    assert [e.type for e in to_framework(effects, framework_id)] == ["SUBSCRIBED", "HEARTBEAT"]
    assert master.framework(framework_id).stream_id == "new"
    assert offer.id.value not in master.state.offers
    # The failed-over framework is offered the agent again with a new offer.
    assert offers_in(master.allocate(), framework_id)[0].id != offer.id


def test_the_old_stream_ending_after_failover_does_not_disconnect_the_framework() -> None:
    master = Master()
    framework_id, _ = master.subscribe(stream="old")
    master.subscribe(framework_info(framework_id=framework_id), stream="new")
    assert frameworks.disconnect(master.state, framework_id, "old", master.now) == []
    assert master.framework(framework_id).connected


@pytest.mark.parametrize(
    ("info", "suppressed", "field"),
    [
        (framework_info(roles=["a"]), (), "framework_info.roles"),
        (framework_info(roles=["a"], role="b", capabilities=["MULTI_ROLE"]), (), "framework_info.role"),
        (framework_info(roles=["a/b"], capabilities=["MULTI_ROLE"]), (), "framework_info.roles"),
        (framework_info(role=".."), (), "framework_info.roles"),
        (framework_info(role="-x"), (), "framework_info.roles"),
        (framework_info(role="a"), ("b",), "suppressed_roles"),
        (framework_info(roles=["a"], capabilities=["MULTI_ROLE"]), ("b",), "suppressed_roles"),
    ],
)
def test_invalid_framework_info_is_refused(info: object, suppressed: tuple[str, ...], field: str) -> None:
    master = Master()
    with pytest.raises(ValidationError) as caught:
        master.subscribe(info, suppressed=suppressed)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert master.state.frameworks == {}


def test_roles_whitelist_admits_star_and_listed_roles_only() -> None:
    master = Master(roles=frozenset({"web"}))
    master.subscribe(framework_info(role="web"))
    master.subscribe(framework_info())  # "*" is always allowed
    with pytest.raises(ValidationError, match="--roles"):
        master.subscribe(framework_info(roles=["web", "db"], capabilities=["MULTI_ROLE"]))
    assert len(master.state.frameworks) == 2


def test_suppressed_roles_at_subscribe_get_no_offers() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(framework_info(role="a"), suppressed=("a",))
    assert offers_in(master.allocate()) == []
    frameworks.revive(master.state, master.framework(framework_id), None)
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_require_subscribed_checks_in_mesos_order() -> None:
    master = Master()
    framework_id, _ = master.subscribe(stream="s")
    with pytest.raises(NotFound, match="Framework cannot be found"):
        frameworks.require_subscribed(master.state, "nope", "s")
    with pytest.raises(ValidationError, match="Mesos-Stream-Id"):
        frameworks.require_subscribed(master.state, framework_id, None)
    with pytest.raises(ValidationError, match="didn't match"):
        frameworks.require_subscribed(master.state, framework_id, "other")
    assert frameworks.require_subscribed(master.state, framework_id, "s").id == framework_id
    master.disconnect(framework_id)
    with pytest.raises(Forbidden, match="not subscribed"):
        frameworks.require_subscribed(master.state, framework_id, "s")


def _framework_with_task(master: Master, failover_timeout: float) -> tuple[str, str]:
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe(framework_info(failover_timeout=failover_timeout))
    master.launch(framework_id, command_task("t1", agent_id))
    return framework_id, agent_id


def test_disconnect_keeps_tasks_until_the_failover_timeout_runs_out() -> None:
    master = Master()
    framework_id, agent_id = _framework_with_task(master, failover_timeout=60.0)
    master.disconnect(framework_id)
    framework = master.framework(framework_id)
    assert framework.link is FrameworkLink.DISCONNECTED
    assert framework.failover_deadline == START + 60.0
    assert frameworks.expire_failovers(master.state, START + 59.9) == []
    assert "t1" in framework.tasks
    effects = frameworks.expire_failovers(master.state, START + 60.0)
    shutdowns = to_agent(effects, agent_id, "SHUTDOWN_FRAMEWORK")
    assert len(shutdowns) == 1
    assert shutdowns[0].shutdown_framework is not None
    assert shutdowns[0].shutdown_framework.framework_id.value == framework_id
    assert framework_id not in master.state.frameworks
    assert [f.id for f in master.state.completed_frameworks] == [framework_id]
    assert master.completed(framework_id) == {"t1": "TASK_KILLED"}
    # Everything the task held is free again.
    assert master.available(agent_id) == master.state.agents[agent_id].total


def test_disconnect_takes_back_offers_without_telling_the_framework() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(framework_info(failover_timeout=10.0))
    offer = master.offer(framework_id)
    effects = master.disconnect(framework_id)
    assert to_framework(effects) == []
    assert offer.id.value not in master.state.offers
    assert offers_in(master.allocate()) == []  # a disconnected framework is offered nothing


def test_resubscribing_in_time_cancels_the_failover_timeout() -> None:
    master = Master()
    framework_id, agent_id = _framework_with_task(master, failover_timeout=30.0)
    master.disconnect(framework_id)
    master.now = START + 10.0
    master.subscribe(framework_info(framework_id=framework_id, failover_timeout=30.0))
    assert master.framework(framework_id).failover_deadline is None
    assert to_agent(frameworks.expire_failovers(master.state, START + 1000.0), agent_id) == []
    assert "t1" in master.framework(framework_id).tasks


def test_zero_failover_timeout_removes_the_framework_at_the_next_check() -> None:
    master = Master()
    framework_id, _ = _framework_with_task(master, failover_timeout=0.0)
    master.disconnect(framework_id)
    effects = frameworks.expire_failovers(master.state, master.now)
    assert to_agent(effects, kind="SHUTDOWN_FRAMEWORK")
    assert framework_id not in master.state.frameworks


def test_teardown_removes_the_framework_at_once_and_it_cannot_come_back() -> None:
    master = Master()
    framework_id, agent_id = _framework_with_task(master, failover_timeout=3600.0)
    stream = master.framework(framework_id).stream_id
    effects = frameworks.teardown(master.state, master.framework(framework_id), master.now)
    assert CloseFrameworkStream(framework_id, stream, None) in effects
    assert len(to_agent(effects, agent_id, "SHUTDOWN_FRAMEWORK")) == 1
    assert framework_id not in master.state.frameworks
    assert master.state.completed_frameworks[-1].id == framework_id
    with pytest.raises(ValidationError, match="removed"):
        master.subscribe(framework_info(framework_id=framework_id))


def test_resubscribe_ignores_user_and_checkpoint_changes() -> None:
    master = Master()
    framework_id, _ = master.subscribe(framework_info(user="alice", checkpoint=True))
    master.subscribe(framework_info("renamed", framework_id=framework_id, user="mallory", checkpoint=False))
    info = master.framework(framework_id).info
    assert (info.user, info.checkpoint, info.name) == ("alice", True, "renamed")


@pytest.mark.parametrize(
    ("field", "changed"),
    [
        ("user", framework_info(user="bob")),
        ("principal", framework_info(principal="other")),
        ("checkpoint", framework_info(checkpoint=True)),
    ],
)
def test_update_framework_may_not_change_user_principal_or_checkpoint(field: str, changed: mesos.FrameworkInfo) -> None:
    master = Master()
    framework_id, _ = master.subscribe(framework_info())
    changed.id = master.framework(framework_id).info.id
    with pytest.raises(ValidationError) as caught:
        frameworks.update_framework(
            master.state, master.framework(framework_id), UpdateFramework(framework_info=changed), master.now
        )
    assert caught.value.field.endswith(field)


def test_update_framework_applies_new_roles_and_tells_agents_with_its_tasks() -> None:
    master = Master()
    framework_id, agent_id = _framework_with_task(master, failover_timeout=0.0)
    info = framework_info("v2", roles=["a", "b"], capabilities=["MULTI_ROLE"], framework_id=framework_id)
    effects = frameworks.update_framework(
        master.state, master.framework(framework_id), UpdateFramework(info), master.now
    )
    assert master.framework(framework_id).roles == frozenset({"a", "b"})
    assert master.framework(framework_id).info.name == "v2"
    assert len(to_agent(effects, agent_id, "UPDATE_FRAMEWORK")) == 1


def test_suppress_stops_offers_and_revive_brings_them_back() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe()
    frameworks.suppress(master.state, master.framework(framework_id), None)
    assert offers_in(master.allocate()) == []
    frameworks.revive(master.state, master.framework(framework_id), [])
    assert len(offers_in(master.allocate(), framework_id)) == 1


def test_suppress_of_one_role_keeps_offers_for_the_others() -> None:
    master = Master()
    master.add_agent()
    framework_id, _ = master.subscribe(framework_info(roles=["a", "b"], capabilities=["MULTI_ROLE"]))
    frameworks.suppress(master.state, master.framework(framework_id), ["a"])
    made = offers_in(master.allocate(), framework_id)
    assert [o.allocation_info.role for o in made if o.allocation_info] == ["b"]


def test_a_chosen_framework_id_never_collides_with_a_generated_one() -> None:
    master = Master()
    chosen, _ = master.subscribe(framework_info(framework_id="M-0000"))
    generated, _ = master.subscribe(framework_info())
    assert chosen == "M-0000"
    assert generated != chosen
    assert len(master.state.frameworks) == 2


def test_update_framework_rescinds_offers_of_roles_it_leaves() -> None:
    master = Master()
    master.add_agent()
    master.add_agent(hostname="node2")
    info = framework_info(roles=["a", "b"], capabilities=["MULTI_ROLE"])
    framework_id, _ = master.subscribe(info)
    made = offers_in(master.allocate(), framework_id)
    by_role = {o.allocation_info.role: o.id.value for o in made if o.allocation_info and o.allocation_info.role}
    assert set(by_role) == {"a", "b"}
    info = framework_info(roles=["a"], capabilities=["MULTI_ROLE"], framework_id=framework_id)
    effects = frameworks.update_framework(
        master.state, master.framework(framework_id), UpdateFramework(info), master.now
    )
    rescinded = [e.rescind.offer_id.value for e in to_framework(effects, framework_id, "RESCIND") if e.rescind]
    assert rescinded == [by_role["b"]]
    assert set(master.state.offers) == {by_role["a"]}


def test_removal_keeps_the_state_of_tasks_that_had_already_ended() -> None:
    master = Master()
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe()
    master.launch(framework_id, command_task("done", agent_id), command_task("busy", agent_id))
    master.agent_update(agent_id, framework_id, "done", "TASK_FINISHED")  # not acknowledged yet
    frameworks.teardown(master.state, master.framework(framework_id), master.now)
    assert master.completed(framework_id) == {"done": "TASK_FINISHED", "busy": "TASK_KILLED"}
