"""Cgroup isolators on this host's real hierarchies: v1 where mounted, v2 where mounted (skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.containerizer.isolators import ContainerLimits, Isolation, detect_cgroups
from butte.containerizer.isolators.cgroups_v1 import CgroupsV1
from butte.containerizer.isolators.cgroups_v2 import CgroupsV2
from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.isolators.pid_namespace import PidNamespace
from butte.testing.wait import until

LAYOUT = detect_cgroups()
MB = 1024 * 1024
V1_NEEDED = ("cpu", "cpuacct", "memory", "pids")
# Double-forks out of its group and session, then waits: only the cgroup still knows the grandchild.
ESCAPER = "setsid sh -c 'sleep 1000 & sleep 1000' & sleep 1000"
HOG = [sys.executable, "-c", "x = b'x' * (100 * 1024 * 1024)"]


def v1_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to write cgroups"
    absent = [name for name in V1_NEEDED if name not in LAYOUT.v1]
    return f"no cgroup v1 hierarchy for {', '.join(absent)}" if absent else None


def v2_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to write cgroups"
    return None if LAYOUT.v2 is not None else "no cgroup2 mount on this host"


HELPER = build_helper()
# Both ways a task lands in its container: the C helper, and sh (+ unshare) where it cannot be built.
LAUNCHERS = [pytest.param(None, id="sh"), pytest.param(HELPER, id="helper")] if HELPER else [None]


@pytest.fixture
def root_name() -> Iterator[str]:
    name = f"butte-unit-{uuid.uuid4().hex[:8]}"
    yield name
    for directory in {*LAYOUT.v1.values(), *([LAYOUT.v2] if LAYOUT.v2 else [])}:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            os.rmdir(path)


def run_in(isolation: Isolation, container_id: str, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*isolation.prelude(container_id), *argv], start_new_session=True)


@pytest.mark.skipif(v1_missing() is not None, reason=str(v1_missing()))
@pytest.mark.parametrize("helper", LAUNCHERS)
def test_v1_limits_usage_oom_and_cleanup(root_name: str, helper: str | None) -> None:
    bases = {name: os.path.join(LAYOUT.v1[name], root_name) for name in V1_NEEDED}
    isolation = Isolation([CgroupsV1(bases, enable_cfs=True)], ["cgroups/cpu", "cgroups/mem"], helper)
    isolation.prepare("c1", ContainerLimits(cpus=0.25, mem_mb=32))
    memory = Path(bases["memory"], "c1")
    assert int((memory / "memory.limit_in_bytes").read_text()) == 32 * MB
    assert int(Path(bases["cpu"], "c1", "cpu.shares").read_text()) == 256
    assert int(Path(bases["cpu"], "c1", "cpu.cfs_quota_us").read_text()) == 25_000
    child = run_in(isolation, "c1", HOG)
    assert child.wait(timeout=30) != 0  # the kernel's OOM killer ended it
    limitation = isolation.limitation("c1")
    assert limitation is not None and limitation.message.startswith("Memory limit exceeded: Requested: 32MB")
    stats = isolation.usage("c1")
    assert stats["mem_limit_bytes"] == 32 * MB and stats["cpus_limit"] == 0.25
    assert stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"] > 0
    isolation.destroy("c1")
    assert not any(Path(base, "c1").exists() for base in bases.values())


@pytest.mark.skipif(v1_missing() is not None, reason=str(v1_missing()))
@pytest.mark.parametrize("helper", LAUNCHERS)
async def test_v1_kill_reaches_processes_that_left_the_group(root_name: str, helper: str | None) -> None:
    bases = {name: os.path.join(LAYOUT.v1[name], root_name) for name in V1_NEEDED}
    isolation = Isolation([CgroupsV1(bases)], ["cgroups/pids"], helper)
    isolation.prepare("c1", ContainerLimits())
    child = run_in(isolation, "c1", ["sh", "-c", ESCAPER])
    procs = Path(bases["pids"], "c1", "cgroup.procs")
    pids = await until(lambda: procs.read_text().split() if len(procs.read_text().split()) >= 5 else None)
    isolation.destroy("c1")
    assert child.wait(timeout=10) != 0
    await until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), what="every process gone")
    assert not Path(bases["pids"], "c1").exists()


@pytest.mark.skipif(v2_missing() is not None, reason=str(v2_missing()))
async def test_v2_membership_cpu_usage_and_cgroup_kill(root_name: str) -> None:
    assert LAYOUT.v2 is not None
    base = os.path.join(LAYOUT.v2, root_name)
    controllers = frozenset({"cpu", "memory", "pids"}) & LAYOUT.v2_controllers
    isolation = Isolation([CgroupsV2(base, controllers)], ["cgroups/cpu"])
    isolation.prepare("c1", ContainerLimits(cpus=0.5, mem_mb=64))
    child = run_in(isolation, "c1", ["sh", "-c", f"{sys.executable} -c 'sum(range(10**6))'; {ESCAPER}"])
    procs = Path(base, "c1", "cgroup.procs")
    pids = await until(lambda: procs.read_text().split() if len(procs.read_text().split()) >= 5 else None)
    stats = isolation.usage("c1")
    assert stats["processes"] >= 5 and stats["cpus_user_time_secs"] > 0  # cpu.stat is there on every v2 cgroup
    if "memory" in controllers:
        assert int(Path(base, "c1", "memory.max").read_text()) == 64 * MB
    isolation.destroy("c1")  # cgroup.kill where the kernel has it
    assert child.wait(timeout=10) != 0
    await until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), what="every process gone")
    assert not Path(base, "c1").exists()


@pytest.mark.skipif(v2_missing() is not None, reason=str(v2_missing()))
def test_v2_memory_limit_and_oom_kill(root_name: str) -> None:
    if "memory" not in LAYOUT.v2_controllers:
        pytest.skip("the memory controller is bound to a v1 hierarchy on this host, not to cgroup2")
    assert LAYOUT.v2 is not None
    base = os.path.join(LAYOUT.v2, root_name)
    isolation = Isolation([CgroupsV2(base, frozenset({"memory"}))], ["cgroups/mem"])
    isolation.prepare("c1", ContainerLimits(mem_mb=32))
    assert run_in(isolation, "c1", HOG).wait(timeout=30) != 0
    limitation = isolation.limitation("c1")
    assert limitation is not None and "Requested: 32MB" in limitation.message
    isolation.destroy("c1")


@pytest.mark.skipif(os.geteuid() != 0, reason="a pid namespace needs root")
@pytest.mark.parametrize("helper", LAUNCHERS)
def test_pid_namespace_shows_only_the_task_and_passes_its_exit_on(helper: str | None) -> None:
    isolation = Isolation([PidNamespace()], ["namespaces/pid"], helper)
    script = "echo $$; ls /proc | grep -c '^[0-9]'; exit 7"
    child = subprocess.run([*isolation.prelude("c1"), "sh", "-c", script], capture_output=True, text=True)
    own_pid, visible = child.stdout.split()
    assert child.returncode == 7 and int(own_pid) <= 2 and int(visible) <= 4


@pytest.fixture(scope="module")
def helper_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """The helper as agents build it (without the C library where it can), and built with the C library."""
    with_libc = build_helper(tmp_path_factory.mktemp("helper-libc"), builds=(("-static",), ()))
    return {"default": HELPER, "libc": with_libc}


@pytest.mark.skipif(os.geteuid() != 0 or HELPER is None, reason="needs root and a C compiler for butte-isolate")
@pytest.mark.parametrize("build", ["default", "libc"])
def test_helper_refuses_to_run_a_task_it_cannot_isolate(
    tmp_path: Path, helper_builds: dict[str, str | None], build: str
) -> None:
    helper = helper_builds[build]  # the same checks for each build of the one source
    assert helper is not None
    marker = tmp_path / "ran"
    refused = subprocess.run([helper, str(tmp_path / "absent" / "cgroup.procs"), "--", "touch", str(marker)])
    assert refused.returncode == 125 and not marker.exists()
    assert subprocess.run([helper, "--", "no-such-program-here"], capture_output=True).returncode == 127
    script = "trap 'echo term; exit 5' TERM; echo ready; sleep 60 & wait"
    graceful = subprocess.Popen([helper, "--pidns", "--", "sh", "-c", script], stdout=subprocess.PIPE, text=True)
    assert graceful.stdout is not None and graceful.stdout.readline() == "ready\n"
    graceful.terminate()  # passed on to the task, which may end as it likes (a kill's grace period)
    assert graceful.wait(timeout=10) == 5 and graceful.stdout.read() == "term\n"
    graceful.stdout.close()
    killed = subprocess.Popen([helper, "--pidns", "--", "sleep", "60"])
    killed.kill()  # the leader's death takes the namespace's init, and all in it, with it
    assert killed.wait(timeout=10) == -9
