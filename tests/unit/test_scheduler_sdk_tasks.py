"""Task-building and sandbox helpers of the scheduler SDK."""

from __future__ import annotations

import socket

import pytest

from butte.core.errors import ValidationError
from butte.core.resources import Resources
from butte.scheduler.calls import acknowledge_call
from butte.scheduler.sandbox import agent_address, is_this_machine
from butte.scheduler.sdk import claim_scalars, command_info, command_task, offer_resources, scalar_resources
from butte.wire.base import ID, convert, to_builtins
from butte.wire.mesos import Offer, TaskStatus


def make_offer(resources: list[dict[str, object]], url: bool = True) -> Offer:
    raw: dict[str, object] = {
        "id": {"value": "O1"},
        "framework_id": {"value": "F"},
        "agent_id": {"value": "S1"},
        "hostname": "node1",
        "resources": resources,
    }
    if url:
        raw["url"] = {"scheme": "http", "address": {"hostname": "node1", "ip": "10.0.0.5", "port": 5052}}
    return convert(raw, Offer)


def scalar(name: str, value: float, role: str = "*") -> dict[str, object]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": role}


def test_offer_resources_keep_roles() -> None:
    offered = offer_resources(make_offer([scalar("cpus", 2), scalar("cpus", 1, "dev"), scalar("mem", 64)]))
    assert offered.scalar("cpus") == 3.0
    assert offered.roles() == {"*", "dev"}


def test_claim_scalars_prefers_the_reservation_then_the_shared_pool() -> None:
    offered = Resources.parse("cpus:2;cpus(dev):0.5;mem:100")
    claimed = claim_scalars(offered, {"cpus": 1.0, "mem": 32.0, "disk": 0.0})
    assert claimed == Resources.parse("cpus(dev):0.5;cpus:0.5;mem:32")


def test_claim_scalars_is_exact_in_thousandths_and_says_when_it_does_not_fit() -> None:
    offered = Resources.parse("cpus:0.3;mem:32")
    assert claim_scalars(offered, {"cpus": 0.1 + 0.2, "mem": 32}) == offered
    assert claim_scalars(offered, {"cpus": 0.301}) is None
    assert claim_scalars(offered, {"gpus": 1}) is None


def test_scalar_resources_leave_out_zero_amounts() -> None:
    assert scalar_resources(0.5, 64) == Resources.parse("cpus:0.5;mem:64")
    with pytest.raises(ValidationError):
        scalar_resources(-1, 64)


def test_command_info_shell_and_argv_forms() -> None:
    assert to_builtins(command_info("echo $HOME")) == {"value": "echo $HOME"}
    argv = command_info(["/bin/echo", "a b"], env={"K": "V"}, user="bob", uris=["http://x/y.tgz"])
    assert to_builtins(argv) == {
        "uris": [{"value": "http://x/y.tgz"}],
        "environment": {"variables": [{"name": "K", "value": "V"}]},
        "shell": False,
        "value": "/bin/echo",
        "arguments": ["/bin/echo", "a b"],
        "user": "bob",
    }
    empties: list[str | list[str]] = ["  ", []]
    for empty in empties:
        with pytest.raises(ValidationError):
            command_info(empty)


def test_command_task_with_claimed_resources_and_labels() -> None:
    claimed = Resources.parse("cpus(dev):0.5;mem:32")
    task = command_task("t1", "S1", "true", name="first", labels={"team": "a"}, resources=claimed)
    assert to_builtins(task) == {
        "name": "first",
        "task_id": {"value": "t1"},
        "agent_id": {"value": "S1"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "role": "dev"},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32.0}, "role": "*"},
        ],
        "command": {"value": "true"},
        "labels": {"labels": [{"key": "team", "value": "a"}]},
    }


def test_acknowledge_needs_uuid_and_agent() -> None:
    uuid = "AAAAAAAAAAAAAAAAAAAAAA=="
    assert acknowledge_call("F", TaskStatus(task_id=ID(value="t"), state="TASK_LOST")) is None
    no_agent = TaskStatus(task_id=ID(value="t"), state="TASK_RUNNING", uuid=uuid)
    assert acknowledge_call("F", no_agent) is None


def test_agent_address_from_url_or_hostname() -> None:
    assert agent_address(make_offer([])) == "10.0.0.5:5052"
    assert agent_address(make_offer([], url=False)) == "node1:5051"


def test_is_this_machine() -> None:
    assert is_this_machine("127.0.0.1")
    assert is_this_machine("localhost")
    assert is_this_machine(socket.gethostname())
    assert not is_this_machine("192.0.2.1")  # TEST-NET-1: never ours
