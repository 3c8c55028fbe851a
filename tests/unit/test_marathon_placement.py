"""Offer matching for Marathon apps: roles, scalars, ports, constraints, GPUs and the rejection reasons."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.resources import Attributes, Resources
from butte.frameworks.marathon.model import Instance
from butte.frameworks.marathon.placement import REASONS, Claim, Rejection, match_offer, summarize
from butte.wire.base import ID
from butte.wire.marathon import App, PortDefinition
from butte.wire.mesos import Offer
from butte.wire.resources import attributes_to_wire, resources_to_wire


def offer(resources: str, hostname: str = "h1", attributes: str = "") -> Offer:
    return Offer(
        id=ID(value="o1"),
        framework_id=ID(value="f1"),
        agent_id=ID(value=f"a-{hostname}"),
        hostname=hostname,
        resources=resources_to_wire(Resources.parse(resources)),
        attributes=attributes_to_wire(Attributes.parse(attributes)),
    )


def app(**fields: Any) -> App:
    defaults: dict[str, Any] = {"id": "/web", "cmd": "sleep 100", "cpus": 1.0, "mem": 128.0}
    return App(**{**defaults, **fields})


def match(the_app: App, the_offer: Offer, count: int = 1, seed: int = 7) -> tuple[list[Claim], Rejection | None]:
    return match_offer(the_app, the_offer, (), count=count, rng=random.Random(seed))


def test_one_task_takes_its_scalars_and_a_port() -> None:
    claims, rejection = match(app(disk=10.0), offer("cpus:4;mem:1024;disk:100;ports:[31000-31009]"))
    assert rejection is None and len(claims) == 1
    claim = claims[0]
    assert claim.resources.scalar("cpus") == 1.0
    assert claim.resources.scalar("mem") == 128.0
    assert claim.resources.scalar("disk") == 10.0
    assert len(claim.host_ports) == 1 and 31000 <= claim.host_ports[0] <= 31009
    assert claim.resources.ranges("ports") == [(claim.host_ports[0], claim.host_ports[0])]


def test_several_tasks_share_the_offer_until_it_runs_out() -> None:
    claims, rejection = match(app(), offer("cpus:2.5;mem:1024;ports:[31000-31009]"), count=5)
    assert len(claims) == 2
    assert rejection == Rejection(("InsufficientCpus",))
    all_ports = [port for claim in claims for port in claim.host_ports]
    assert len(set(all_ports)) == len(all_ports)


def test_port_choice_is_deterministic_given_the_seed() -> None:
    the_app = app(port_definitions=[PortDefinition(port=0), PortDefinition(port=0)])
    the_offer = offer("cpus:8;mem:4096;ports:[31000-31999]")
    first = match(the_app, the_offer, count=3, seed=11)
    assert first == match(the_app, the_offer, count=3, seed=11)
    assert all(len(claim.host_ports) == 2 for claim in first[0])


def test_require_ports_needs_exactly_the_declared_ports() -> None:
    the_app = app(require_ports=True, port_definitions=[PortDefinition(port=31005), PortDefinition(port=31002)])
    claims, rejection = match(the_app, offer("cpus:4;mem:1024;ports:[31000-31009]"))
    assert rejection is None and claims[0].host_ports == (31005, 31002)
    claims, rejection = match(the_app, offer("cpus:4;mem:1024;ports:[31003-31009]"))
    assert claims == [] and rejection == Rejection(("InsufficientPorts",))


def test_require_ports_allows_one_task_per_offer() -> None:
    the_app = app(require_ports=True, port_definitions=[PortDefinition(port=31005)])
    claims, rejection = match(the_app, offer("cpus:4;mem:1024;ports:[31000-31009]"), count=2)
    assert len(claims) == 1 and rejection == Rejection(("InsufficientPorts",))


def test_declared_ports_without_require_ports_are_service_ports() -> None:
    the_app = app(port_definitions=[PortDefinition(port=10000)])
    claims, rejection = match(the_app, offer("cpus:4;mem:1024;ports:[31000-31000]"))
    assert rejection is None and claims[0].host_ports == (31000,)


def test_no_port_definitions_need_no_ports() -> None:
    claims, rejection = match(app(port_definitions=[]), offer("cpus:4;mem:1024"))
    assert rejection is None and claims[0].host_ports == ()
    assert claims[0].resources.ranges("ports") == []


def test_too_few_ports() -> None:
    the_app = app(port_definitions=[PortDefinition(port=0)] * 3)
    claims, rejection = match(the_app, offer("cpus:4;mem:1024;ports:[31000-31001]"))
    assert claims == [] and rejection == Rejection(("InsufficientPorts",))


def test_every_missing_scalar_is_a_reason() -> None:
    claims, rejection = match(app(cpus=2.0, mem=512.0, disk=1.0, gpus=1), offer("cpus:1;mem:256;ports:[1-9]"))
    assert claims == []
    assert rejection == Rejection(("InsufficientCpus", "InsufficientMemory", "InsufficientDisk", "InsufficientGpus"))


def test_accepted_resource_roles_limit_what_is_used() -> None:
    mixed = offer("cpus(web):2;mem(web):512;cpus:8;mem:8192;ports:[31000-31009]")
    only_star = app(accepted_resource_roles=["*"])
    claims, _ = match(only_star, mixed)
    assert claims[0].resources.roles() == {"*"}
    only_web = app(accepted_resource_roles=["web"])
    claims, rejection = match(only_web, mixed)
    # The web role has no ports: the task cannot get one.
    assert claims == [] and rejection == Rejection(("InsufficientPorts",))


def test_default_roles_use_reservations_first() -> None:
    mixed = offer("cpus(web):0.5;mem(web):512;cpus:8;mem:8192;ports:[31000-31009]")
    claims, _ = match(app(), mixed)
    resources = claims[0].resources
    assert resources.filter_role("web").scalar("cpus") == 0.5
    assert resources.filter_role("*").scalar("cpus") == 0.5
    assert resources.filter_role("web").scalar("mem") == 128.0


def test_an_offer_without_an_accepted_role_is_unfulfilled_role() -> None:
    claims, rejection = match(app(accepted_resource_roles=["web"]), offer("cpus:8;mem:8192;ports:[1-9]"))
    assert claims == [] and rejection is not None and "UnfulfilledRole" in rejection.reasons


def test_ports_come_from_the_role_that_offers_them() -> None:
    claims, _ = match(app(), offer("cpus:8;mem:8192;ports(web):[31000-31000]"))
    assert claims[0].resources.filter_role("web").ranges("ports") == [(31000, 31000)]


def test_unique_hostname_allows_one_task_per_offer() -> None:
    the_app = app(constraints=[["hostname", "UNIQUE"]])
    claims, rejection = match(the_app, offer("cpus:8;mem:8192;ports:[31000-31009]"), count=3)
    assert len(claims) == 1 and rejection == Rejection(("UnfulfilledConstraint",))


def test_constraints_see_the_instances_already_placed() -> None:
    the_app = app(constraints=[["rack", "MAX_PER", "2"]])
    running = Instance(
        task_id="t", app_id="/web", version="v", config_version="v", agent_id="a", host="h9",
        staged_at=0.0, attributes={"rack": "r1"},
    )  # fmt: skip
    the_offer = offer("cpus:8;mem:8192;ports:[31000-31009]", attributes="rack:r1")
    claims, rejection = match_offer(the_app, the_offer, [running], count=3, rng=random.Random(1))
    assert len(claims) == 1 and rejection == Rejection(("UnfulfilledConstraint",))


def test_gpu_agents_are_kept_for_gpu_apps_unless_unrestricted() -> None:
    gpu_offer = offer("cpus:8;mem:8192;gpus:2;ports:[31000-31009]")
    claims, rejection = match(app(), gpu_offer)
    assert claims == [] and rejection == Rejection(("DeclinedScarceResources",))
    claims, rejection = match_offer(
        app(), gpu_offer, (), count=1, rng=random.Random(1), gpu_scheduling_behavior="unrestricted"
    )
    assert len(claims) == 1 and rejection is None
    claims, rejection = match(app(gpus=1), gpu_offer)
    assert rejection is None and claims[0].resources.scalar("gpus") == 1.0


def test_count_zero_claims_nothing() -> None:
    assert match(app(), offer("cpus:1;mem:128;ports:[1-1]"), count=0) == ([], None)


def test_summarize_counts_every_reason() -> None:
    counts = summarize([Rejection(("InsufficientCpus", "UnfulfilledRole")), Rejection(("InsufficientCpus",))])
    assert counts["InsufficientCpus"] == 2 and counts["UnfulfilledRole"] == 1
    assert list(counts) == list(REASONS) and counts["InsufficientPorts"] == 0


@given(
    cpus=st.integers(min_value=0, max_value=16),
    ports=st.integers(min_value=0, max_value=20),
    width=st.integers(min_value=0, max_value=3),
    count=st.integers(min_value=0, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_claims_never_exceed_the_offer_nor_share_ports(
    cpus: int, ports: int, width: int, count: int, seed: int
) -> None:
    resources = f"cpus:{cpus};mem:100000" + (f";ports:[31000-{31000 + ports - 1}]" if ports else "")
    the_app = app(cpus=0.5, port_definitions=[PortDefinition(port=0)] * width)
    the_offer = offer(resources)
    claims, rejection = match(the_app, the_offer, count=count, seed=seed)
    total = Resources.sum(claim.resources for claim in claims)
    assert Resources.parse(resources).contains(total)
    host_ports = [port for claim in claims for port in claim.host_ports]
    assert len(host_ports) == len(set(host_ports)) == width * len(claims)
    assert (rejection is None) == (len(claims) == count)
    assert len(claims) == min(count, cpus * 2, ports // width if width else count)


@pytest.mark.parametrize("behaviour", ["restricted", "unrestricted"])
def test_gpu_apps_never_take_a_gpuless_offer(behaviour: str) -> None:
    claims, rejection = match_offer(
        app(gpus=1), offer("cpus:8;mem:8192;ports:[1-9]"), (), count=1, rng=random.Random(1),
        gpu_scheduling_behavior="restricted" if behaviour == "restricted" else "unrestricted",
    )  # fmt: skip
    assert claims == [] and rejection == Rejection(("InsufficientGpus",))
