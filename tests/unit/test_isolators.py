"""Isolators without an agent: flag parsing, host detection, the posix fallback, and the composite prelude."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.containerizer.isolators import CgroupLayout, ContainerLimits, Isolation, build_isolation, detect_cgroups
from butte.containerizer.isolators.base import MEMORY_LIMITATION, Isolator, Limitation, memory_limitation, read_keyed
from butte.containerizer.isolators.cgroups_v2 import cpu_weight
from butte.containerizer.isolators.containers import limits_of
from butte.containerizer.isolators.detect import parse_isolation
from butte.containerizer.isolators.isolation import JOIN_SCRIPT
from butte.containerizer.isolators.posix import Posix, sweep_proc
from butte.core.errors import ValidationError
from butte.scheduler.tasks import scalar_resources
from butte.testing.wait import until
from butte.wire.resources import resources_to_wire

MB = 1024 * 1024


def test_unknown_isolator_is_a_flag_error() -> None:
    with pytest.raises(ValidationError, match="Unknown isolator 'cgroups/gpu'"):
        parse_isolation("cgroups/cpu,cgroups/gpu")
    assert parse_isolation(" posix/cpu, filesystem/posix ") == ["posix/cpu", "filesystem/posix"]


def test_cgroups_fall_back_to_posix_without_hierarchies() -> None:
    isolation = build_isolation("cgroups/cpu,cgroups/mem", "butte", False, CgroupLayout())
    assert isolation.describe() == "posix/cpu,posix/mem"
    assert [isolator.name for isolator in isolation.isolators] == ["posix"]
    assert isolation.prelude("c1") == ()  # nothing to join: a posix task starts as it is


def test_detects_v1_hierarchies_and_the_unified_one_from_proc_files(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpu pids\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        f"32 25 0:28 / {unified} rw shared:9 - cgroup2 cgroup2 rw\n"
    )
    self_cgroup = tmp_path / "cgroup"
    self_cgroup.write_text("4:memory:/jobs/agent\n2:cpu,cpuacct:/\n0::/agent.slice\n")
    layout = detect_cgroups(str(mountinfo), str(self_cgroup))
    assert layout.v1["memory"] == "/sys/fs/cgroup/memory/jobs/agent"
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/"
    assert layout.v2 == f"{unified}/agent.slice"


def test_limits_come_from_the_task_resources() -> None:
    assert limits_of(resources_to_wire(scalar_resources(0.5, 64.0, 10.0))) == ContainerLimits(cpus=0.5, mem_mb=64.0)
    assert limits_of([]) == ContainerLimits()
    assert ContainerLimits(mem_mb=1.5).mem_bytes == int(1.5 * MB)


def test_memory_limitation_names_the_limit_as_mesos_does() -> None:
    limitation = memory_limitation(64 * MB, 64 * MB + 4096)
    assert limitation.reason == MEMORY_LIMITATION == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert limitation.message == "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB"


def test_cpu_weight_is_proportional_and_clamped() -> None:
    assert cpu_weight(1.0) == 100
    assert cpu_weight(0.25) == 25
    assert cpu_weight(0.001) == 1
    assert cpu_weight(500.0) == 10_000


def test_read_keyed_skips_lines_that_are_not_numbers(tmp_path: Path) -> None:
    stat = tmp_path / "memory.stat"
    stat.write_text("rss 4096\ncache 0\nbogus x\n")
    assert read_keyed(str(stat)) == {"rss": 4096, "cache": 0}
    assert read_keyed(str(tmp_path / "absent")) == {}


class Recorder(Isolator):
    """Records the hooks called; joins a file and wraps the argv."""

    name = "recorder"

    def __init__(self, join: str) -> None:
        self.join = join
        self.calls: list[str] = []

    def prepare(self, container_id: str, limits: ContainerLimits) -> None:
        self.calls.append(f"prepare {container_id}")

    def join_paths(self, container_id: str) -> tuple[str, ...]:
        return (self.join,)

    def wrapper(self) -> tuple[str, ...]:
        return ("env", "WRAPPED=1")

    def kill(self, container_id: str) -> bool:
        self.calls.append(f"kill {container_id}")
        return True

    def cleanup(self, container_id: str) -> None:
        self.calls.append(f"cleanup {container_id}")


class Unreadable(Isolator):
    """Past its limit for every container but one, whose files cannot be read (a cgroup being removed)."""

    name = "unreadable"

    def limitation(self, container_id: str) -> Limitation | None:
        if container_id == "going":
            raise OSError(errno.ENODEV, "No such device")
        return memory_limitation(MB, MB)


def test_a_container_that_cannot_be_read_is_skipped_by_the_poll_not_fatal_to_it() -> None:
    isolation = Isolation([Unreadable()], ["unreadable"])
    for container_id in ("a", "going", "b"):
        isolation.prepare(container_id, ContainerLimits(mem_mb=1))
    assert [container_id for container_id, _ in isolation.limitations()] == ["a", "b"]


def test_a_destroy_kills_then_cleans_up_unless_the_isolator_says_otherwise(tmp_path: Path) -> None:
    recorder = Recorder(str(tmp_path / "procs"))
    isolation = Isolation([recorder], ["recorder"])
    isolation.prepare("c1", ContainerLimits())
    isolation.destroy("c1")
    isolation.destroy("c1")  # a second time: nothing left to do
    assert recorder.calls == ["prepare c1", "kill c1", "cleanup c1"]


def test_prelude_writes_the_child_pid_then_execs_the_wrapped_command(tmp_path: Path) -> None:
    joined = tmp_path / "procs"
    joined.touch()
    recorder = Recorder(str(joined))
    isolation = Isolation([recorder], ["recorder"])
    isolation.prepare("c1", ContainerLimits(cpus=1.0))
    isolation.prepare("c1", ContainerLimits(cpus=1.0))  # a task group's second task: set up once
    argv = [*isolation.prelude("c1"), "sh", "-c", 'echo "$WRAPPED $$"']
    assert argv[:3] == ["/bin/sh", "-c", JOIN_SCRIPT]
    child = subprocess.run(argv, capture_output=True, text=True, check=True)
    wrapped, pid = child.stdout.split()
    assert wrapped == "1" and joined.read_text().strip() == pid  # exec keeps the pid that joined
    isolation.destroy("c1")
    isolation.destroy("c1")
    assert recorder.calls == ["prepare c1", "kill c1", "cleanup c1"]
    assert isolation.containers() == []


def test_a_refused_join_fails_the_task_before_its_command_runs(tmp_path: Path) -> None:
    isolation = Isolation([Recorder(str(tmp_path / "missing" / "procs"))], ["recorder"])
    marker = tmp_path / "ran"
    child = subprocess.run([*isolation.prelude("c1"), "touch", str(marker)], capture_output=True)
    assert child.returncode == 125 and not marker.exists()


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[bytes]]:
    code = "import sys, time; x = b'x' * (40 * 1024 * 1024); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()
    child.stdout.close()


def test_posix_measures_sessions_and_limits_memory_by_polling(hog: subprocess.Popen[bytes]) -> None:
    sessions = sweep_proc()
    assert hog.pid in sessions[hog.pid].pids
    posix = Posix(enforce_memory=True)
    posix.prepare("c1", ContainerLimits(cpus=0.1, mem_mb=16))
    posix.isolate("c1", hog.pid)
    usage = posix.usage("c1")
    assert usage["mem_rss_bytes"] > 40 * MB and usage["processes"] == 1
    limitation = posix.limitation("c1")
    assert limitation is not None and limitation.message.startswith("Memory limit exceeded: Requested: 16MB")
    posix.kill("c1")
    assert hog.wait(timeout=10) == -signal.SIGKILL


def test_posix_without_mem_measures_but_never_limits(hog: subprocess.Popen[bytes]) -> None:
    isolation = build_isolation("posix/cpu", "butte", False, CgroupLayout())
    isolation.prepare("c1", ContainerLimits(mem_mb=1))
    isolation.started("c1", hog.pid)
    assert isolation.limitation("c1") is None
    stats = isolation.usage("c1")
    assert stats["mem_limit_bytes"] == MB and stats["mem_rss_bytes"] > 40 * MB and stats["timestamp"] > 0


async def test_composite_polls_a_posix_container_over_its_limit(hog: subprocess.Popen[bytes]) -> None:
    isolation = build_isolation("posix/cpu,posix/mem", "butte", False, CgroupLayout())
    isolation.prepare("c1", ContainerLimits(mem_mb=8))
    isolation.started("c1", hog.pid)
    found = await until(isolation.limitations, timeout=5)
    assert [container_id for container_id, _ in found] == ["c1"]
    isolation.destroy("c1")
    await until(lambda: hog.poll() is not None, timeout=5)
    assert not os.path.exists(f"/proc/{hog.pid}/stat") or hog.returncode == -signal.SIGKILL
