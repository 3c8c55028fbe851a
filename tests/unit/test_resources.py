"""Resources arithmetic, parsing, flat form, attributes and host defaults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butte.core import ranges
from butte.core.errors import ValidationError
from butte.core.resources import Attributes, Entry, Resources, detect_host_resources

R = Resources.parse


def test_parse_flag_syntax_reads_every_kind() -> None:
    r = R("cpus:4;mem:2048;disk:10000;ports:[31000-32000, 33000-33010];gpus:1;foo:{a,b}")
    assert r.scalar("cpus") == 4.0
    assert r.scalar("mem") == 2048.0
    assert r.scalar("gpus") == 1.0
    assert r.ranges("ports") == [(31000, 32000), (33000, 33010)]
    assert r.set_items("foo") == frozenset({"a", "b"})
    assert r.names() == {"cpus", "mem", "disk", "ports", "gpus", "foo"}


def test_parse_roles_and_default_role() -> None:
    r = R("cpus(web):2;cpus:1;mem:10", default_role="batch")
    assert r.filter_role("web") == R("cpus:2").with_role("web")
    assert r.filter_role("batch") == R("cpus:1;mem:10").with_role("batch")
    assert r.unreserved().is_empty()
    assert r.scalar("cpus") == 3.0
    assert r.roles() == {"web", "batch"}


def test_parse_tolerates_spaces_and_empty_tokens() -> None:
    assert R(" cpus : 2 ; ; mem:3 ;") == R("cpus:2;mem:3")


def test_parse_sums_repeated_names() -> None:
    assert R("cpus:1;cpus:2;ports:[1-2];ports:[3-4]") == R("cpus:3;ports:[1-4]")


def test_parse_json_list_of_v1_resources() -> None:
    text = """[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},
               {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":5}]},"role":"web"},
               {"name":"mem","type":"SCALAR","scalar":{"value":64},
                "reservations":[{"type":"STATIC","role":"a"},{"type":"DYNAMIC","role":"a/b"}]},
               {"name":"zones","type":"SET","set":{"item":["x","y"]}}]"""
    r = R(text)
    assert r.scalar("cpus") == 2.0
    assert r.filter_role("web").ranges("ports") == [(1, 5)]
    assert r.filter_role("a/b").scalar("mem") == 64.0
    assert r.set_items("zones") == {"x", "y"}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("cpus:-1", "cpus"),
        ("cpus:nan", "cpus"),
        ("cpus:inf", "cpus"),
        ("mem:lots", "mem"),
        ("ports:[5-1]", "ports"),
        ("ports:[1-]", "ports"),
        ("ports:[1-2", "ports"),
        ("ports:[a-b]", "ports"),
        ("foo:1;foo(r):[1-2]", "foo"),
        ("cpus", "cpus"),
        ("cpus(:1", "cpus"),
        ('[{"name":"cpus","type":"SCALAR"}]', "resources[0].scalar"),
        ('[{"name":"cpus","type":"SCALAR","scalar":{"value":-2}}]', "resources[0].scalar"),
        ('[{"name":"a","type":"SCALAR","scalar":{"value":1}},{"name":"b","type":"TEXT"}]', "resources[1].type"),
        ('[{"name":"p","type":"RANGES","ranges":{"range":[{"begin":1}]}}]', "resources[0].ranges.end"),
        ("[1,", "resources"),
    ],
)
def test_parse_errors_name_the_resource(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        R(text)
    assert info.value.field == field


def test_fixed_point_scalars() -> None:
    assert R("cpus:0.1") + R("cpus:0.2") == R("cpus:0.3")
    assert (R("cpus:0.1") + R("cpus:0.2")).scalar("cpus") == 0.3
    left = R("cpus:0.3") - R("cpus:0.1") - R("cpus:0.2")
    assert left.is_empty()
    assert R("cpus:0.0001").is_empty()  # below Mesos's precision of 0.001


def test_subtract_requires_containment() -> None:
    with pytest.raises(ValueError, match="not contained"):
        R("cpus:1") - R("cpus:2")
    with pytest.raises(ValueError):
        R("cpus:1") - R("cpus(web):1")
    with pytest.raises(ValueError):
        R("ports:[1-5]") - R("ports:[5-6]")


def test_contains() -> None:
    big = R("cpus:4;mem:100;ports:[1-10, 20-30];s:{a,b}")
    assert big.contains(R("cpus:4;ports:[2-3, 25-30];s:{a}"))
    assert big.contains(Resources.empty())
    assert not big.contains(R("ports:[9-21]"))
    assert not big.contains(R("cpus:4.001"))
    assert not big.contains(R("s:{c}"))
    assert not big.contains(R("cpus(web):1"))


def test_ranges_add_and_subtract_coalesce() -> None:
    r = R("ports:[1-3]") + R("ports:[4-6, 10-12]")
    assert r.ranges("ports") == [(1, 6), (10, 12)]
    assert (r - R("ports:[3-4, 11-11]")).ranges("ports") == [(1, 2), (5, 6), (10, 10), (12, 12)]
    assert (r - r).is_empty()


def test_sets_add_and_subtract() -> None:
    assert (R("s:{a}") + R("s:{b}")) - R("s:{a}") == R("s:{b}")


def test_zero_and_empty_values_disappear() -> None:
    assert R("cpus:0;ports:[];s:{}").is_empty()
    assert R("cpus:1;mem:2") - R("mem:2") == R("cpus:1")


def test_quantities_count_ports() -> None:
    r = R("cpus:1.5;cpus(web):1;ports:[1-10];s:{a}")
    assert r.quantities() == {"cpus": 2.5, "ports": 10.0}
    assert r.milli_quantities() == {"cpus": 2500, "ports": 10000}


def test_to_flat_always_has_the_four_standard_names() -> None:
    assert Resources.empty().to_flat() == {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}
    flat = R("cpus:4;cpus(web):1;mem:15000;ports:[31000-32000, 33000-33010];foo:{b,a}").to_flat()
    assert flat == {
        "cpus": 5.0,
        "gpus": 0.0,
        "mem": 15000.0,
        "disk": 0.0,
        "ports": "[31000-32000, 33000-33010]",
        "foo": "{a,b}",
    }
    assert isinstance(flat["cpus"], float)


def test_with_role_merges() -> None:
    r = R("cpus:1;cpus(a):2;ports:[1-2];ports(a):[3-4]").with_role("b")
    assert r == R("cpus(b):3;ports(b):[1-4]")


def test_allocatable_is_either_or() -> None:
    minimum = R("cpus:0.01;mem:32")
    assert R("cpus:0.01").allocatable(minimum)
    assert R("mem:32").allocatable(minimum)
    assert not R("cpus:0.005;mem:31").allocatable(minimum)
    assert not R("disk:1000").allocatable(minimum)
    assert not Resources.empty().allocatable(minimum)
    assert R("disk:1").allocatable(Resources.empty())


def test_str_round_trips_and_repr() -> None:
    r = R("cpus:0.5;mem(web):64;ports:[5-5, 7-9];s:{x}")
    assert R(str(r)) == r
    assert repr(R("cpus:2")) == "Resources('cpus:2')"


def test_add_refuses_type_mix_on_one_key() -> None:
    with pytest.raises(ValueError):
        R("foo:1") + R("foo:[1-2]")


def test_entries_round_trip() -> None:
    r = R("cpus:0.25;ports(web):[1-2];s:{a}")
    assert Resources.from_entries(r.entries()) == r
    assert [e.kind for e in r.entries()] == ["SCALAR", "RANGES", "SET"]
    assert Entry("cpus", "*", 0.25) in r.entries()


def test_detect_host_resources_follows_mesos_defaults() -> None:
    big = detect_host_resources(cpu_count=8, mem_total_mb=16384, disk_total_mb=102400)
    assert big == R("cpus:8;mem:15360;disk:97280;ports:[31000-32000]")
    small = detect_host_resources(cpu_count=1, mem_total_mb=1024, disk_total_mb=8000)
    assert small == R("cpus:1;mem:512;disk:4000;ports:[31000-32000]")


def test_attributes_parse_and_flat() -> None:
    attributes = Attributes.parse("rack:a;zone:1;ports:[1-2];tags:{x,y};host:node-1.example")
    assert list(attributes) == [
        ("rack", "a"),
        ("zone", 1.0),
        ("ports", ((1, 2),)),
        ("tags", frozenset({"x", "y"})),
        ("host", "node-1.example"),
    ]
    assert attributes.to_flat() == {
        "rack": "a",
        "zone": 1.0,
        "ports": "[1-2]",
        "tags": "{x,y}",
        "host": "node-1.example",
    }
    assert len(Attributes.parse("")) == 0


@pytest.mark.parametrize("text", ["rack", ":a", "p:[2-1]"])
def test_attributes_reject_malformed(text: str) -> None:
    with pytest.raises(ValidationError):
        Attributes.parse(text)


def test_range_helpers() -> None:
    assert ranges.coalesce([(5, 6), (1, 2), (3, 3)]) == ((1, 3), (5, 6))
    assert ranges.subtract(((1, 10),), ((0, 2), (5, 5), (9, 20))) == ((3, 4), (6, 8))
    assert ranges.contains(((1, 5), (7, 9)), ((2, 3), (7, 7)))
    assert not ranges.contains(((1, 5), (7, 9)), ((5, 7),))
    assert ranges.count(((1, 5), (7, 9))) == 8
    assert ranges.format_ranges(((5, 5),)) == "[5-5]"
    with pytest.raises(ValueError):
        ranges.coalesce([(-1, 3)])


port_lists = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=6).map(
    lambda pairs: ranges.coalesce((b, b + n) for b, n in pairs)
)


@settings(max_examples=150, deadline=None)
@given(port_lists, port_lists)
def test_range_algebra_matches_sets_of_ports(a: ranges.RangeList, b: ranges.RangeList) -> None:
    def ports(x: ranges.RangeList) -> set[int]:
        return {p for begin, end in x for p in range(begin, end + 1)}

    assert ports(ranges.union(a, b)) == ports(a) | ports(b)
    assert ports(ranges.subtract(a, b)) == ports(a) - ports(b)
    assert ranges.contains(a, b) == (ports(b) <= ports(a))
    assert ranges.count(a) == len(ports(a))
    assert ranges.union(a, b) == ranges.coalesce(ranges.union(a, b))


scalars = st.integers(0, 5000).map(lambda milli: milli / 1000)


@settings(max_examples=150, deadline=None)
@given(scalars, scalars, port_lists, port_lists)
def test_add_then_subtract_gives_back(x: float, y: float, a: ranges.RangeList, b: ranges.RangeList) -> None:
    left = Resources.from_entries([Entry("cpus", "*", x), Entry("ports", "*", a)])
    right = Resources.from_entries([Entry("cpus", "*", y), Entry("ports", "*", ranges.subtract(b, a))])
    total = left + right
    assert total.contains(left) and total.contains(right)
    assert total - right == left
    assert (total - left).scalar("cpus") == pytest.approx(y)
