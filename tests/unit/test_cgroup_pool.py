"""The pool of recycled cgroups, on plain directories standing in for the hierarchies (it only names,
renames and removes directories; butte-isolate does the renames, played here by os.rename)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from butte.containerizer.isolators.cgroup_pool import RECYCLE_MAX_CHARGED_BYTES, CgroupPool, idle_name


@pytest.fixture
def bases(tmp_path: Path) -> list[str]:
    made = [str(tmp_path / "memory"), str(tmp_path / "cpu")]
    for base in made:
        os.mkdir(base)
    return made


def helper_recycles(bases: list[str], container_id: str, reused: str | None = None) -> None:
    """What butte-isolate does with --reuse and --recycle: take the idle cgroups over, give them back."""
    for base in bases:
        if reused is not None:
            os.rename(f"{base}/{reused}", f"{base}/{container_id}")
        else:
            os.mkdir(f"{base}/{container_id}")
    for base in reversed(bases):
        os.rename(f"{base}/{container_id}", f"{base}/{idle_name(container_id)}")


def test_a_recycled_container_is_handed_to_the_next_one_with_its_counters_reset(bases: list[str]) -> None:
    pool = CgroupPool(bases, [(bases[1], "cpuacct.usage", "0")], bases[0])
    assert pool.setup_args("c1") == []  # nothing idle yet: the helper makes the cgroups
    assert pool.recycle_args("c1") == [
        "--recycle",
        "idle-c1",
        "--reset",
        f"{bases[1]}/c1/cpuacct.usage",
        "0",
        "--recycle-below",
        f"{bases[0]}/c1/memory.usage_in_bytes",
        str(RECYCLE_MAX_CHARGED_BYTES),
    ]
    helper_recycles(bases, "c1")
    assert pool.settle("c1") and pool.idle() == ["idle-c1"]

    assert pool.setup_args("c2") == ["--reuse", "idle-c1"]
    pool.recycle_args("c2")
    helper_recycles(bases, "c2", reused="idle-c1")
    assert pool.settle("c2") and pool.idle() == ["idle-c2"]
    assert sorted(os.listdir(bases[0])) == ["idle-c2"]


def test_an_idle_cgroup_carries_the_limits_its_last_container_left_in_it(bases: list[str]) -> None:
    pool = CgroupPool(bases, [], None)
    assert pool.limits_held("c1") == {}  # nothing lent: new cgroups hold the kernel's defaults
    pool.recycle_args("c1", {"cpu.shares": "10"})
    helper_recycles(bases, "c1")
    pool.settle("c1")
    pool.setup_args("c2")
    assert pool.limits_held("c2") == {"cpu.shares": "10"}
    assert pool.settle("c2")  # never taken over: it comes back holding the same
    pool.setup_args("c3")
    assert pool.limits_held("c3") == {"cpu.shares": "10"}
    pool.recycle_args("c3", {"cpu.shares": "20"})
    helper_recycles(bases, "c3", reused="idle-c1")
    pool.settle("c3")
    pool.setup_args("c4")
    assert pool.limits_held("c4") == {"cpu.shares": "20"}
    os.rename(f"{bases[0]}/idle-c3", f"{bases[0]}/c4")  # taken over, and then lost (the helper was killed)
    assert not pool.settle("c4")
    assert pool.limits_held("c4") == {} and pool.idle() == []


def test_cgroups_the_helper_left_are_for_destroy_and_removed_ones_are_settled(bases: list[str]) -> None:
    pool = CgroupPool(bases, [], None)
    pool.recycle_args("killed")
    for base in bases:
        os.mkdir(f"{base}/killed")  # the helper was killed (or the task OOM-killed): nothing recycled
    assert not pool.settle("killed")
    assert pool.idle() == []

    pool.recycle_args("busy")  # charged above the limit: the helper removed the cgroups instead
    assert pool.settle("busy") and pool.idle() == []

    pool.recycle_args("half")  # the last cgroup would not be renamed and was removed: a trace is left
    os.mkdir(f"{bases[-1]}/idle-half")
    assert not pool.settle("half")


def test_an_idle_cgroup_handed_to_a_launch_that_never_ran_comes_back(bases: list[str]) -> None:
    pool = CgroupPool(bases, [], None)
    pool.recycle_args("c1")
    helper_recycles(bases, "c1")
    pool.settle("c1")
    assert pool.setup_args("c2") == ["--reuse", "idle-c1"]
    assert pool.settle("c2")  # its sandbox could not be made: the helper never ran
    assert pool.idle() == ["idle-c1"]


def test_the_pool_and_its_promises_stay_within_its_size(bases: list[str]) -> None:
    pool = CgroupPool(bases, [], None, size=2)
    assert pool.recycle_args("a") and pool.recycle_args("b")
    assert pool.recycle_args("c") == []  # a burst: c's helper removes its cgroups itself
    for container_id in ("a", "b"):
        helper_recycles(bases, container_id)
        assert pool.settle(container_id)
    assert pool.settle("c")  # removed by its helper: nothing to keep
    assert pool.idle() == ["idle-a", "idle-b"] and pool.recycle_args("d") == []
    assert pool.setup_args("d") == ["--reuse", "idle-b"] and pool.recycle_args("d")  # room again
    pool.close()
    assert os.listdir(bases[0]) == ["idle-b"]  # lent to d, whose helper has it now


def test_a_new_agent_sweeps_idle_cgroups_and_nothing_else(bases: list[str]) -> None:
    for base in bases:
        os.mkdir(f"{base}/idle-old")
        os.mkdir(f"{base}/live-container")
    CgroupPool(bases, [], None).sweep()
    assert os.listdir(bases[0]) == ["live-container"] and os.listdir(bases[1]) == ["live-container"]
