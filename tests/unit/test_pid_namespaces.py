"""A pid namespace made by the spawn thread, with butte-isolate started as its init (pid 1), through the
launcher as the agent starts an isolated command task: what the task sees, how its end is reported, signals,
and what it leaves behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from butte.containerizer.isolators import detect_cgroups
from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.launcher import Launcher, LaunchSpec
from butte.containerizer.pid_namespaces import PidNamespaces
from butte.testing.wait import until

HELPER = build_helper()
LAYOUT = detect_cgroups()

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or HELPER is None, reason="needs root (pid namespaces) and a C compiler for butte-isolate"
)


def our_pid_namespace() -> str:
    return os.readlink("/proc/self/ns/pid")


def test_the_thread_spawns_one_init_then_goes_back_to_its_own_namespace() -> None:
    namespaces = PidNamespaces()
    try:
        with namespaces.for_next_child() as made:
            inside = subprocess.run(["sh", "-c", "echo $$; readlink /proc/self/ns/pid"], capture_output=True, text=True)
        after = subprocess.run(["readlink", "/proc/self/ns/pid"], capture_output=True, text=True)
    finally:
        namespaces.close()
    own_pid, namespace = inside.stdout.split()
    assert made and own_pid == "1" and namespace != our_pid_namespace()
    assert after.stdout.strip() == our_pid_namespace()  # later children start beside the agent again


def isolated(sandbox: Path, script: str, checkpointed: bool = True) -> LaunchSpec:
    """A command task as the agent starts one in a pid namespace: butte-isolate records its status when its
    framework checkpoints."""
    assert HELPER is not None
    return LaunchSpec(
        argv=("/bin/sh", "-c", script),
        env={"PATH": os.environ["PATH"]},
        cwd=str(sandbox),
        stdout_path=str(sandbox / "stdout"),
        stderr_path=str(sandbox / "stderr"),
        exit_status_path=str(sandbox / "exit_status") if checkpointed else None,
        status_helper=HELPER,
        prelude=(HELPER, "--pidns", "--remove", "--"),
        new_pid_namespace=True,
    )


@pytest.fixture
async def launcher() -> AsyncIterator[Launcher]:
    running = Launcher()
    yield running
    running.close()


async def test_the_helper_is_the_init_and_the_task_sees_only_its_namespace(launcher: Launcher, tmp_path: Path) -> None:
    script = "echo $PPID $$; ls /proc | grep -c '^[0-9]'; exit 7"
    process = await launcher.launch(isolated(tmp_path, script))
    assert await asyncio.wait_for(process.wait(), timeout=10) == 7
    parent, own, visible = (tmp_path / "stdout").read_text().split()
    assert (parent, own) == ("1", "2") and int(visible) <= 4  # init, the shell, its ls and grep
    assert (tmp_path / "exit_status").read_text() == "7\n"


async def test_a_sigterm_reaches_the_task_and_a_signal_death_is_reported_as_one(
    launcher: Launcher, tmp_path: Path
) -> None:
    graceful = await launcher.launch(isolated(tmp_path, "trap 'echo term; exit 5' TERM; echo ready; sleep 60 & wait"))
    await until(lambda: (tmp_path / "stdout").read_text() == "ready\n")
    graceful.signal_group(signal.SIGTERM)  # the init passes it on: a kill's grace period holds
    assert await asyncio.wait_for(graceful.wait(), timeout=10) == 5
    assert (tmp_path / "stdout").read_text() == "ready\nterm\n"

    for checkpointed in (True, False):
        marker = unique_sleep()
        killed = await launcher.launch(isolated(tmp_path, f"exec sleep {marker}", checkpointed))
        await until(lambda: running(marker))  # noqa: B023 - awaited within the iteration
        os.kill(running(marker)[0], signal.SIGKILL)
        # An init cannot die of its own signal: it exits 128 + N, which the launcher reads back as the signal.
        assert await asyncio.wait_for(killed.wait(), timeout=10) == -signal.SIGKILL
    assert (tmp_path / "exit_status").read_text() == f"{128 + signal.SIGKILL}\n"


@pytest.mark.skipif(any(name not in LAYOUT.v1 for name in ("cpu", "memory")), reason="no cgroup v1 cpu and memory")
async def test_processes_the_task_leaves_behind_end_with_it_before_its_cgroups_go(
    launcher: Launcher, tmp_path: Path, bases: list[str]
) -> None:
    marker = unique_sleep()
    # Double-forks out of its group and session, then ends once the test has seen all three sleeps.
    go = tmp_path / "go"
    script = f"setsid sh -c 'sleep {marker} & sleep {marker}' & sleep {marker} & "
    script += f"echo started; while [ ! -e {go} ]; do sleep 0.05; done"
    cgroups = [part for base in bases for part in ("--cgroup", f"{base}/c1")]
    spec = isolated(tmp_path, script)
    process = await launcher.launch(dataclasses.replace(spec, prelude=(spec.prelude[0], *cgroups, *spec.prelude[1:])))
    await until(lambda: len(running(marker)) == 3)
    assert all(os.path.isdir(f"{base}/c1") for base in bases)
    go.touch()
    assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    assert (tmp_path / "stdout").read_text() == "started\n"
    # The init ended the namespace's other processes itself, so the cgroups were empty and it could remove them.
    assert running(marker) == [] and not any(os.path.isdir(f"{base}/c1") for base in bases)


@pytest.fixture
def bases() -> Iterator[list[str]]:
    made = [os.path.join(LAYOUT.v1[name], f"butte-pidns-{uuid.uuid4().hex[:8]}") for name in ("memory", "cpu")]
    for base in made:
        os.makedirs(base)
    yield made
    for base in made:
        for entry in os.scandir(base):
            if entry.is_dir():
                os.rmdir(entry.path)
        os.rmdir(base)


def unique_sleep() -> str:
    """A sleep's argument no other process on the host has: a long one, told apart by its fraction."""
    return f"1000.{uuid.uuid4().int % 10**9:09d}"


def running(marker: str) -> list[int]:
    """The host's pids of the live ``sleep <marker>`` processes."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if entry.isdigit() and handle.read() == f"sleep\0{marker}\0".encode():
                    found.append(int(entry))
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
    return found


def test_where_the_kernel_refuses_a_namespace_the_spawn_goes_on_without_one() -> None:
    class Refusing:
        """The C library's unshare as it answers without CAP_SYS_ADMIN."""

        calls = 0

        def unshare(self, flags: int) -> int:
            Refusing.calls += 1
            return -1

    namespaces = PidNamespaces()
    assert namespaces._open()
    namespaces._libc = Refusing()  # type: ignore[assignment]
    try:
        for _ in range(2):
            with namespaces.for_next_child() as made:
                spawned = subprocess.run(["readlink", "/proc/self/ns/pid"], capture_output=True, text=True)
            assert not made and spawned.stdout.strip() == our_pid_namespace()
    finally:
        namespaces.close()
    assert Refusing.calls == 1  # asked once: the helper makes its own namespaces from then on
