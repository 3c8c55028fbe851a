"""Marathon placement constraints: each operator against an agent and the instances already placed (A4)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.resources import Attributes
from butte.frameworks.marathon.constraints import attributes_of, check_constraint, scalar_text
from butte.frameworks.marathon.model import Instance
from butte.wire.base import ID
from butte.wire.mesos import Offer
from butte.wire.resources import attributes_to_wire


def placed(host: str, **attributes: str) -> Instance:
    return Instance(
        task_id=f"t-{host}",
        app_id="/app",
        version="v",
        config_version="v",
        agent_id=f"a-{host}",
        host=host,
        staged_at=0.0,
        attributes=attributes,
    )


def ok(constraint: list[str], host: str, attributes: Mapping[str, str], *instances: Instance) -> bool:
    return check_constraint(constraint, host, attributes, instances) is None


def test_unique_hostname_refuses_a_host_already_used() -> None:
    assert ok(["hostname", "UNIQUE"], "h1", {}, placed("h2"))
    assert not ok(["hostname", "UNIQUE"], "h1", {}, placed("h1"))
    assert not ok(["@hostname", "UNIQUE"], "h1", {}, placed("h1"))


def test_unique_attribute() -> None:
    assert ok(["rack", "UNIQUE"], "h1", {"rack": "a"}, placed("h2", rack="b"))
    assert not ok(["rack", "UNIQUE"], "h1", {"rack": "a"}, placed("h2", rack="a"))


def test_cluster_with_value_pins_the_value() -> None:
    assert ok(["rack", "CLUSTER", "a"], "h1", {"rack": "a"})
    assert not ok(["rack", "CLUSTER", "a"], "h1", {"rack": "b"})


def test_cluster_without_value_follows_the_first_instance() -> None:
    assert ok(["rack", "CLUSTER"], "h1", {"rack": "b"})
    assert ok(["rack", "CLUSTER"], "h1", {"rack": "b"}, placed("h2", rack="b"))
    assert not ok(["rack", "CLUSTER"], "h1", {"rack": "a"}, placed("h2", rack="b"))
    assert not ok(["hostname", "CLUSTER"], "h1", {}, placed("h2"))


def test_group_by_prefers_the_least_used_values() -> None:
    two_on_a = (placed("h1", rack="a"), placed("h2", rack="a"), placed("h3", rack="b"))
    assert ok(["rack", "GROUP_BY"], "h4", {"rack": "b"}, *two_on_a)
    assert not ok(["rack", "GROUP_BY"], "h4", {"rack": "a"}, *two_on_a)
    # A value not seen yet is always welcome.
    assert ok(["rack", "GROUP_BY"], "h4", {"rack": "c"}, *two_on_a)


def test_group_by_with_a_count_waits_for_that_many_values() -> None:
    one_each = (placed("h1", rack="a"), placed("h2", rack="b"))
    # Three racks expected: rack c (count 0) must be used before a or b get a second task.
    assert not ok(["rack", "GROUP_BY", "3"], "h3", {"rack": "a"}, *one_each)
    assert ok(["rack", "GROUP_BY", "3"], "h3", {"rack": "c"}, *one_each)
    assert ok(["rack", "GROUP_BY", "2"], "h3", {"rack": "a"}, *one_each)


def test_max_per() -> None:
    two = (placed("h1", rack="a"), placed("h2", rack="a"))
    assert ok(["rack", "MAX_PER", "3"], "h3", {"rack": "a"}, *two)
    assert not ok(["rack", "MAX_PER", "2"], "h3", {"rack": "a"}, *two)
    assert ok(["hostname", "MAX_PER", "1"], "h3", {}, *two)
    assert not ok(["hostname", "MAX_PER", "1"], "h1", {}, *two)


def test_like_and_unlike_match_the_whole_value() -> None:
    assert ok(["rack", "LIKE", "rack-[0-9]"], "h", {"rack": "rack-1"})
    assert not ok(["rack", "LIKE", "rack"], "h", {"rack": "rack-1"})
    assert ok(["hostname", "LIKE", "web.*"], "web-3", {})
    assert ok(["rack", "UNLIKE", "rack"], "h", {"rack": "rack-1"})
    assert not ok(["rack", "UNLIKE", "rack-.*"], "h", {"rack": "rack-1"})


def test_is_matches_text_and_scalars_as_text() -> None:
    assert ok(["rack", "IS", "a"], "h", {"rack": "a"})
    assert not ok(["rack", "IS", "a"], "h", {"rack": "ab"})
    offer = _offer(Attributes.parse("level:1;weight:2.5"))
    assert ok(["level", "IS", "1"], "h", attributes_of(offer))
    assert ok(["weight", "IS", "2.5"], "h", attributes_of(offer))


def test_region_and_zone_read_agent_attributes() -> None:
    assert ok(["@zone", "IS", "z1"], "h", {"zone": "z1"})
    assert not ok(["@region", "IS", "eu"], "h", {"region": "us"})
    assert ok(["@zone", "UNIQUE"], "h", {"zone": "z1"}, placed("h2", zone="z2"))


@pytest.mark.parametrize("operator", ["UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "IS", "MAX_PER"])
def test_an_agent_without_the_attribute_fails_all_but_unlike(operator: str) -> None:
    value = {"LIKE": ".*", "IS": "a", "MAX_PER": "5", "CLUSTER": "a"}.get(operator)
    constraint = ["rack", operator] + ([value] if value else [])
    reason = check_constraint(constraint, "h", {}, ())
    assert reason is not None and "rack" in reason
    assert ok(["rack", "UNLIKE", "a"], "h", {})


@pytest.mark.parametrize(
    "constraint",
    [["rack"], ["rack", "NEAR", "a"], ["rack", "MAX_PER", "many"], ["rack", "LIKE", "("], ["rack", "LIKE"]],
)
def test_malformed_constraints_are_never_satisfied(constraint: list[str]) -> None:
    assert not ok(constraint, "h", {"rack": "a"})


def test_attributes_of_renders_every_type() -> None:
    offer = _offer(Attributes.parse("rack:r1;cores:8;speed:2.25;slots:[1-2,5-9];tags:{y,x}"))
    assert attributes_of(offer) == {
        "rack": "r1",
        "cores": "8",
        "speed": "2.25",
        "slots": "[1-2,5-9]",
        "tags": "{x,y}",
    }


@pytest.mark.parametrize(
    ("value", "text"), [(1.0, "1"), (0.5, "0.5"), (1234.0, "1234"), (0.0001, "0"), (2.0005, "2"), (-3.0, "-3")]
)
def test_scalar_text(value: float, text: str) -> None:
    assert scalar_text(value) == text


@given(st.lists(st.sampled_from("abc"), max_size=12), st.sampled_from("abcd"))
def test_group_by_never_widens_the_spread(racks: list[str], offered: str) -> None:
    instances = [placed(f"h{i}", rack=rack) for i, rack in enumerate(racks)]
    counts = {rack: racks.count(rack) for rack in set(racks)}
    if ok(["rack", "GROUP_BY"], "hx", {"rack": offered}, *instances) and offered in counts:
        # Accepting a seen value means it was among the least used, so max - min grows by at most one.
        assert counts[offered] == min(counts.values())


def _offer(attributes: Attributes) -> Offer:
    return Offer(
        id=ID(value="o1"),
        framework_id=ID(value="f1"),
        agent_id=ID(value="a1"),
        hostname="h",
        attributes=attributes_to_wire(attributes),
    )
