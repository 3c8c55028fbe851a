"""mesos.v1 Resource and Attribute structs and their conversions."""

from __future__ import annotations

import json

import pytest

from butte.core.errors import ValidationError
from butte.core.resources import Attributes, Resources
from butte.wire.base import decode, encode
from butte.wire.resources import (
    Attribute,
    Resource,
    attributes_from_wire,
    attributes_to_wire,
    resources_from_wire,
    resources_to_wire,
)


def _decode_resources(data: object) -> list[Resource]:
    return decode(json.dumps(data), list[Resource])


def test_to_wire_matches_what_mesos_sends_plain_frameworks() -> None:
    wire = resources_to_wire(Resources.parse("cpus:4;ports:[31000-32000]"))
    assert json.loads(encode(wire)) == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*"},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 32000}]}, "role": "*"},
    ]
    assert b'"value":4.0' in encode(wire)  # doubles are written like 4.0


def test_to_wire_with_allocation_role_and_sets() -> None:
    wire = resources_to_wire(Resources.parse("cpus(web):0.5;zones:{b,a}"), allocation_role="web")
    assert json.loads(encode(wire)) == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "role": "web", "allocation_info": {"role": "web"}},
        {"name": "zones", "type": "SET", "set": {"item": ["a", "b"]}, "role": "*", "allocation_info": {"role": "web"}},
    ]


def test_round_trip_through_json() -> None:
    original = Resources.parse("cpus:4;mem:2048;disk:0.5;ports:[1-2, 5-9];s:{x};gpus(ml):1")
    wire = decode(encode(resources_to_wire(original)), list[Resource])
    assert resources_from_wire(wire) == original


def test_from_wire_takes_role_from_reservations_then_role() -> None:
    wire = _decode_resources(
        [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}},
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "role": "web"},
            {
                "name": "cpus",
                "type": "SCALAR",
                "scalar": {"value": 3},
                "reservations": [{"type": "STATIC", "role": "eng"}, {"type": "DYNAMIC", "role": "eng/ci"}],
                "disk": {"persistence": {"id": "v1"}, "volume": {"container_path": "data", "mode": "RW"}},
                "revocable": {},
                "unknown_key": 1,
            },
        ]
    )
    resources = resources_from_wire(wire)
    assert resources == Resources.parse("cpus:1;cpus(web):2;cpus(eng/ci):3")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"name": "cpus", "type": "SCALAR"}, "resources[1].scalar"),
        ({"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}, "resources[1].scalar"),
        ({"name": "ports", "type": "RANGES"}, "resources[1].ranges"),
        (
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 9, "end": 2}]}},
            "resources[1].ranges.range[0]",
        ),
        ({"name": "s", "type": "SET"}, "resources[1].set"),
        ({"name": "t", "type": "TEXT", "text": {"value": "x"}}, "resources[1].type"),
        ({"name": "mem", "type": "SET", "set": {"item": ["a"]}}, "resources[1].type"),
    ],
)
def test_from_wire_errors_carry_the_field_path(item: dict[str, object], field: str) -> None:
    wire = _decode_resources([{"name": "mem", "type": "SCALAR", "scalar": {"value": 1}}, item])
    with pytest.raises(ValidationError) as info:
        resources_from_wire(wire)
    assert info.value.field == field


def test_from_wire_rejects_nan_and_custom_prefix() -> None:
    wire = [Resource(name="cpus", type="SCALAR", scalar=None)]
    with pytest.raises(ValidationError) as info:
        resources_from_wire(wire, field="task_infos[0].resources")
    assert info.value.field == "task_infos[0].resources[0].scalar"
    nan = resources_to_wire(Resources.parse("cpus:1"))
    assert nan[0].scalar is not None
    nan[0].scalar.value = float("nan")
    with pytest.raises(ValidationError, match="finite"):
        resources_from_wire(nan)


def test_decode_rejects_unknown_type_names() -> None:
    with pytest.raises(ValidationError):
        _decode_resources([{"name": "cpus", "type": "BOGUS"}])


def test_attributes_round_trip() -> None:
    attributes = Attributes.parse("rack:r1;zone:2;ports:[1-2];tags:{a,b}")
    wire = attributes_to_wire(attributes)
    assert json.loads(encode(wire)) == [
        {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
        {"name": "zone", "type": "SCALAR", "scalar": {"value": 2.0}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}},
        {"name": "tags", "type": "SET", "set": {"item": ["a", "b"]}},
    ]
    assert attributes_from_wire(decode(encode(wire), list[Attribute])) == attributes


def test_attribute_without_its_value_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        attributes_from_wire([Attribute(name="rack", type="TEXT")])
    assert info.value.field == "attributes[0].text"
