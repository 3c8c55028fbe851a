"""A property of MarathonCore's rolling restart under any interleaving of offers and status updates.

While the restart runs, no more than ``maxCapacity`` tasks hold resources (Marathon's one extra when
minHealthy equals maxCapacity included): a task Marathon asked to kill counts until its terminal status, as in
Marathon's TaskReplaceActor. Once tasks stop failing, the restart finishes with exactly ``instances``
instances, all of the new version.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marathon_core_kit import BIG, Harness, app, offer

from butte.frameworks.marathon.model import Instance, app_config_version
from butte.frameworks.marathon.replace import is_alive, restart_bounds

STATES = ("TASK_STARTING", "TASK_RUNNING", "TASK_FAILED", "TASK_FINISHED", "TASK_UNREACHABLE", "TASK_KILLED")

actions = st.one_of(
    st.tuples(st.just("offer"), st.integers(1, 3)),
    st.tuples(st.just("status"), st.integers(0, 9), st.sampled_from(STATES), st.sampled_from([None, True, False])),
    st.tuples(st.just("ack_kill"), st.integers(0, 9)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 2.0, 30.0])),
)


def _pick(instances: list[Instance], index: int) -> Instance | None:
    ordered = sorted(instances, key=lambda i: i.task_id)
    return ordered[index % len(ordered)] if ordered else None


def _apply(h: Harness, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "offer":
        h.offers(*(offer(f"h{n}", BIG) for n in range(action[1])))
    elif kind == "status" and (chosen := _pick(h.instances(), action[1])) is not None:
        h.status(chosen.task_id, action[2], healthy=action[3] if action[2] == "TASK_RUNNING" else None)
    elif kind == "ack_kill" and (chosen := _pick([i for i in h.instances() if i.killing], action[1])) is not None:
        h.status(chosen.task_id, "TASK_KILLED")
    elif kind == "tick":
        h.advance(action[1])
        h.tick()


def _settled(h: Harness, count: int) -> bool:
    instances = h.instances()
    return not h.core.deployments and len(instances) == count and all(i.state == "TASK_RUNNING" for i in instances)


def _settle(h: Harness, count: int) -> None:
    """Everything goes well from now on: offers come, tasks run healthy, kills end, time passes."""
    for _ in range(40):
        if _settled(h, count):
            break
        h.advance(5.0)
        h.tick()
        h.offers(offer("h1", BIG))
        for instance in h.instances():
            if instance.killing:
                h.status(instance.task_id, "TASK_KILLED")
            elif instance.state != "TASK_RUNNING" or instance.healthy is not True:
                h.status(instance.task_id, "TASK_RUNNING", healthy=True)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 3),
    min_health=st.sampled_from([0.0, 0.5, 1.0]),
    over=st.sampled_from([0.0, 0.5, 1.0]),
    checked=st.booleans(),
    steps=st.lists(actions, max_size=40),
)
def test_a_rolling_restart_stays_within_capacity_and_ends_with_exactly_instances_new_ones(
    count: int, min_health: float, over: float, checked: bool, steps: list[tuple[Any, ...]]
) -> None:
    fields: dict[str, Any] = {
        "instances": count,
        "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": over},
        "backoffSeconds": 1,
        "maxLaunchDelaySeconds": 4,
    }
    if checked:
        fields["healthChecks"] = [{"protocol": "MESOS_TCP", "portIndex": 0}]
    h = Harness()
    h.start(app(**fields), healthy=True if checked else None)
    h.restart("/web")
    the_app = h.core.root.apps["/web"]
    ceiling = restart_bounds(the_app, old_alive=True).max_capacity
    for action in steps:
        _apply(h, action)
        holding = h.instances()  # every instance the book still has: none is terminal
        assert len(holding) <= ceiling, (action, holding)
    _settle(h, count)
    assert len(h.core.deployments) == 0, "the restart did not finish once tasks stopped failing"
    version = app_config_version(the_app)
    assert len(h.instances()) == count
    assert all(is_alive(i) and i.config_version == version for i in h.instances())
