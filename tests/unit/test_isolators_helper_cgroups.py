"""butte-isolate setting a container's v1 cgroups up and taking them down itself, on this host's hierarchies:
the agent does no cgroup work of its own for a command task (Isolation.helper_prelude)."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from butte.containerizer.isolators import ContainerLimits, Isolation, detect_cgroups
from butte.containerizer.isolators.base import MEMORY_LIMITATION, read_int
from butte.containerizer.isolators.cgroups_v1 import CgroupsV1
from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.isolators.isolation import HelperLaunch
from butte.containerizer.isolators.pid_namespace import PidNamespace
from butte.containerizer.pid_namespaces import PidNamespaces

LAYOUT = detect_cgroups()
HELPER = build_helper()
CONTROLLERS = ("cpu", "cpuacct", "memory")
HOG = [sys.executable, "-c", "x = b'x' * (100 * 1024 * 1024)"]
LIMITS = ContainerLimits(cpus=0.5, mem_mb=64)


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to write cgroups"
    if HELPER is None:
        return "needs a C compiler for butte-isolate"
    absent = [name for name in CONTROLLERS if name not in LAYOUT.v1]
    return f"no cgroup v1 hierarchy for {', '.join(absent)}" if absent else None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture
def bases() -> Iterator[dict[str, str]]:
    name = f"butte-helper-{uuid.uuid4().hex[:8]}"
    made = {controller: os.path.join(LAYOUT.v1[controller], name) for controller in CONTROLLERS}
    for base in made.values():
        os.makedirs(base, exist_ok=True)
    yield made
    left = [entry.path for base in made.values() for entry in os.scandir(base) if entry.is_dir()]
    for path in left:
        os.rmdir(path)  # the host stays clean either way
    for base in made.values():
        os.rmdir(base)
    assert left == [], "the test left cgroups behind"


def run(launch: HelperLaunch, argv: list[str], as_init: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the task under the helper; ``as_init``: in a pid namespace made for the helper, as the agent does
    (else the helper makes the namespace and forks its init, the way it falls back to)."""
    namespaces = PidNamespaces()
    try:
        with namespaces.for_next_child() if as_init else contextlib.nullcontext():
            return subprocess.run([*launch.prelude, *argv], capture_output=True, text=True, timeout=30)
    finally:
        namespaces.close()


def container_dirs(bases: dict[str, str], name: str) -> list[str]:
    return [f"{base}/{name}" for base in bases.values()]


def test_the_helper_limits_the_container_then_recycles_its_cgroups_for_the_next(bases: dict[str, str]) -> None:
    cgroups = CgroupsV1(bases)
    isolation = Isolation([cgroups, PidNamespace()], ["cgroups/cpu", "cgroups/mem", "namespaces/pid"], HELPER)

    def script(name: str) -> str:
        limits = f"{bases['memory']}/{name}/memory.limit_in_bytes {bases['cpu']}/{name}/cpu.shares"
        return f"cat /proc/self/cgroup; cat {limits}; ls /proc | grep -c '^[0-9]'"

    try:
        launch = isolation.helper_prelude("c1", LIMITS)
        assert launch is not None and "--reuse" not in launch.prelude  # nothing idle yet
        isolation.expect("c1", LIMITS)
        ran = run(launch, ["sh", "-c", script("c1")])
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.split()
        for controller in CONTROLLERS:
            assert any(line.endswith(f"{os.path.basename(bases[controller])}/c1") for line in lines), lines
        assert lines[-3:-1] == [str(64 * 1024 * 1024), "512"]
        assert int(lines[-1]) <= 4  # the init, sh, ls and grep (when sh started it before ls read /proc)
        assert isolation.forget_if_removed("c1") and isolation.containers() == []
        assert not any(os.path.exists(path) for path in container_dirs(bases, "c1"))
        assert all(os.path.isdir(path) for path in container_dirs(bases, "idle-c1"))
        assert read_int(f"{bases['cpuacct']}/idle-c1/cpuacct.usage") == 0  # reset for whoever comes next

        launch = isolation.helper_prelude("c2", LIMITS)
        assert launch is not None and "--reuse" in launch.prelude
        ran = run(launch, ["sh", "-c", script("c2")], as_init=True)
        assert ran.returncode == 0 and f"{os.path.basename(bases['memory'])}/c2" in ran.stdout
        assert isolation.forget_if_removed("c2")
        assert all(os.path.isdir(path) for path in container_dirs(bases, "idle-c2"))
        assert not os.path.exists(f"{bases['memory']}/idle-c1")  # it became c2's, then idle-c2
    finally:
        cgroups.close()


def test_recycled_cgroups_get_only_the_limits_that_differ_and_defaults_for_those_not_set(
    bases: dict[str, str],
) -> None:
    cgroups = CgroupsV1(bases)
    isolation = Isolation([cgroups, PidNamespace()], ["cgroups/cpu", "cgroups/mem", "namespaces/pid"], HELPER)
    memory_limit, shares = "memory.limit_in_bytes", "cpu.shares"

    def launch_and_end(container_id: str, limits: ContainerLimits) -> list[str]:
        """The control files the helper was told to write; the container has run and given its cgroups back."""
        launch = isolation.helper_prelude(container_id, limits)
        assert launch is not None
        isolation.expect(container_id, limits)
        ran = run(launch, ["true"], as_init=True)
        assert ran.returncode == 0, ran.stderr
        assert isolation.forget_if_removed(container_id)
        at = [i for i, part in enumerate(launch.prelude) if part == "--write"]
        return [os.path.basename(launch.prelude[i + 1]) for i in at]

    try:
        assert sorted(launch_and_end("c1", LIMITS)) == [shares, memory_limit]  # new cgroups: every limit
        assert launch_and_end("c2", LIMITS) == []  # the same limits: none written again
        assert read_int(f"{bases['memory']}/idle-c2/{memory_limit}") == 64 * 1024 * 1024
        assert launch_and_end("c3", ContainerLimits(cpus=0.25, mem_mb=64)) == [shares]
        # No memory resource: the limit c3 left goes back to none, rather than holding this task to 64 MB.
        assert launch_and_end("c4", ContainerLimits(cpus=0.25)) == [memory_limit]
        assert (read_int(f"{bases['memory']}/idle-c4/{memory_limit}") or 0) > 1 << 60
        assert read_int(f"{bases['cpu']}/idle-c4/{shares}") == 256
    finally:
        cgroups.close()


# The task's own process is OOM-killed; or a child of it is, and the shell would go on (the helper ends it).
OOM_TASKS = {"task": HOG, "child": ["sh", "-c", f"{shlex.join(HOG)}; exec sleep 60"]}


@pytest.mark.parametrize("as_init", [False, True], ids=["outer", "init"])
@pytest.mark.parametrize("killed", list(OOM_TASKS))
def test_an_oom_kill_ends_the_container_and_keeps_its_cgroups_for_the_agent(
    bases: dict[str, str], killed: str, as_init: bool
) -> None:
    cgroups = CgroupsV1(bases)
    isolation = Isolation([cgroups, PidNamespace()], ["cgroups/mem", "namespaces/pid"], HELPER)
    limits = ContainerLimits(mem_mb=32)
    launch = isolation.helper_prelude("hog", limits)
    assert launch is not None
    isolation.expect("hog", limits)
    ran = run(launch, OOM_TASKS[killed], as_init)
    # An init cannot die of its own signal: it exits 128 + N, which the launcher reads back as the signal.
    assert ran.returncode == (128 + 9 if as_init else -9), ran.stderr
    assert not isolation.forget_if_removed("hog")  # left for the agent: the limitation is read there
    limitation = isolation.limitation("hog")
    assert limitation is not None and limitation.reason == MEMORY_LIMITATION
    isolation.destroy("hog")
    assert not any(os.path.exists(path) for path in container_dirs(bases, "hog") + container_dirs(bases, "idle-hog"))


def test_a_process_left_behind_without_a_namespace_is_never_recycled(bases: dict[str, str]) -> None:
    cgroups = CgroupsV1(bases)
    isolation = Isolation([cgroups], ["cgroups/cpu", "cgroups/mem"], HELPER)
    launch = isolation.helper_prelude("leaver", LIMITS)
    assert launch is not None
    isolation.expect("leaver", LIMITS)
    # The task ends at once; what it started left its process group and session, not its cgroups.
    ran = run(launch, ["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & exit 0"])
    assert ran.returncode == 0
    assert not isolation.forget_if_removed("leaver")
    assert cgroups.usage("leaver")["processes"] == 1
    isolation.destroy("leaver")  # kills it, then removes the cgroups
    assert not any(os.path.exists(path) for path in container_dirs(bases, "leaver"))
    assert cgroups._pool is not None and cgroups._pool.idle() == []


def test_cgroups_that_cannot_all_be_recycled_are_all_removed(bases: dict[str, str]) -> None:
    cgroups = CgroupsV1(bases)
    isolation = Isolation([cgroups, PidNamespace()], ["cgroups/cpu", "cgroups/mem", "namespaces/pid"], HELPER)
    in_the_way = f"{bases['cpu']}/idle-c1"  # the rename of the cpu cgroup, the middle one, fails on it
    os.mkdir(in_the_way)
    try:
        launch = isolation.helper_prelude("c1", LIMITS)
        assert launch is not None and "--recycle" in launch.prelude
        isolation.expect("c1", LIMITS)
        ran = run(launch, ["true"], as_init=True)
        assert ran.returncode == 0, ran.stderr
        # Pooled in part, a later container would find a cgroup new where the pool says it holds its limits.
        assert isolation.forget_if_removed("c1")
        assert not any(os.path.exists(path) for path in container_dirs(bases, "c1"))
        assert [path for path in container_dirs(bases, "idle-c1") if os.path.exists(path)] == [in_the_way]
        assert cgroups._pool is not None and cgroups._pool.idle() == []
    finally:
        os.rmdir(in_the_way)
        cgroups.close()


def test_a_cgroup_that_cannot_be_made_fails_the_set_up_before_the_task_runs(
    bases: dict[str, str], tmp_path: os.PathLike[str]
) -> None:
    marker = os.path.join(tmp_path, "ran")
    unmakeable = f"{bases['memory']}/no-such-parent/c1"
    assert HELPER is not None
    ran = subprocess.run(
        [HELPER, "--cgroup", f"{bases['cpu']}/c1", "--cgroup", unmakeable, "--", "touch", marker],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 125
    assert f"cannot make {unmakeable}" in ran.stderr
    assert not os.path.exists(marker)
    os.rmdir(f"{bases['cpu']}/c1")  # made before the one that failed: the agent removes it (fixture: none left)
