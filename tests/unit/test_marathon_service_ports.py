"""Service ports: declared port 0 gets a cluster-unique port from 10000, kept across updates."""

from __future__ import annotations

import msgspec

from butte.frameworks.marathon.groups import with_app
from butte.frameworks.marathon.model import RootGroup
from butte.frameworks.marathon.service_ports import LOCAL_PORT_MIN, assign_service_ports
from butte.frameworks.marathon.validation import parse_app


def root_with(*bodies: dict[str, object]) -> RootGroup:
    root = RootGroup()
    for body in bodies:
        root = with_app(root, parse_app(msgspec.json.encode(body)))
    return root


def ports(root: RootGroup, app_id: str) -> list[int]:
    return [d.port for d in root.apps[app_id].port_definitions]


def test_port_zero_gets_the_lowest_free_service_port() -> None:
    target = root_with({"id": "/a", "cmd": "x"}, {"id": "/b", "cmd": "x", "portDefinitions": [{"port": 0}] * 2})
    assigned = assign_service_ports(RootGroup(), target)
    assert sorted(ports(assigned, "/a") + ports(assigned, "/b")) == [LOCAL_PORT_MIN + i for i in range(3)]


def test_fixed_ports_are_kept_and_never_handed_out_again() -> None:
    target = root_with(
        {"id": "/a", "cmd": "x", "portDefinitions": [{"port": LOCAL_PORT_MIN}]}, {"id": "/b", "cmd": "x"}
    )
    assigned = assign_service_ports(RootGroup(), target)
    assert ports(assigned, "/a") == [LOCAL_PORT_MIN]
    assert ports(assigned, "/b") == [LOCAL_PORT_MIN + 1]


def test_an_update_with_port_zero_keeps_the_service_port_it_had() -> None:
    first = assign_service_ports(RootGroup(), root_with({"id": "/b", "cmd": "x"}, {"id": "/a", "cmd": "x"}))
    again = assign_service_ports(first, root_with({"id": "/a", "cmd": "x"}, {"id": "/b", "cmd": "x"}))
    assert ports(again, "/a") == ports(first, "/a") and ports(again, "/b") == ports(first, "/b")
    assert again.apps["/a"] == first.apps["/a"]


def test_apps_without_ports_are_untouched() -> None:
    target = root_with({"id": "/a", "cmd": "x", "portDefinitions": []})
    assert assign_service_ports(RootGroup(), target).apps["/a"] == target.apps["/a"]
