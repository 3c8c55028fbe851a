"""OOM events (cgroup v1 eventfd, v2 inotify on ``memory.events``), how the agent's containers act on them, and
containers growing as tasks join (Mesos's ``update()``)."""

from __future__ import annotations

import asyncio
import os
import select
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.containerizer.isolators import ContainerLimits, Isolation, Isolator, Limitation, detect_cgroups
from butte.containerizer.isolators.base import memory_limitation
from butte.containerizer.isolators.cgroups_v1 import CgroupsV1
from butte.containerizer.isolators.cgroups_v2 import CgroupsV2
from butte.containerizer.isolators.containers import OOM_CONFIRM_TRIES, Containers
from butte.containerizer.isolators.oom_events import (
    IN_IGNORED,
    IN_MODIFY,
    MemoryEventsWatch,
    OomEventFds,
    _parse_events,
)
from butte.testing.wait import until

MB = 1024 * 1024
LAYOUT = detect_cgroups()
HOG = [sys.executable, "-c", "x = b'x' * (100 * 1024 * 1024)"]


# ---- cgroup v2: inotify on memory.events ----


def test_inotify_names_each_container_whose_file_changed_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a.events", tmp_path / "b.events"
    first.write_text("oom_kill 0\n")
    second.write_text("oom_kill 0\n")
    watch = MemoryEventsWatch()
    try:
        watch.watch("c1", str(first))
        watch.watch("c2", str(second))
        assert watch.fired() == []
        for _ in range(3):
            with first.open("a") as handle:
                handle.write("oom_kill 1\n")
        assert select.select([watch], [], [], 5)[0] == [watch]
        assert watch.fired() == ["c1"]
        assert watch.fired() == []  # read once, gone
        assert watch.unwatch("c1") is False  # the instance stays for the others
        first.write_text("oom_kill 2\n")
        second.unlink()  # as a cgroup's files go with it: the kernel drops the watch (IN_IGNORED)
        select.select([watch], [], [], 5)
        assert watch.fired() == []
        assert watch.watched() == []
    finally:
        watch.close()


def test_inotify_events_are_parsed_with_their_names_skipped() -> None:
    named = struct.pack("iIII", 3, IN_MODIFY, 0, 16) + b"memory.events\0\0\0"
    plain = struct.pack("iIII", 4, IN_IGNORED, 0, 0)
    assert _parse_events(named + plain) == [(3, IN_MODIFY), (4, IN_IGNORED)]
    assert _parse_events(b"") == []


def v2_tree(tmp_path: Path) -> Path:
    """What a v2 cgroup looks like to the isolator, as plain files (this host may have no v2 memory)."""
    container = tmp_path / "c1"
    container.mkdir()
    (tmp_path / "cgroup.subtree_control").write_text("")
    for name, value in [("memory.max", "max"), ("memory.events", "oom 0\noom_kill 0\n"), ("memory.peak", "0")]:
        (container / name).write_text(value)
    (container / "cpu.weight").write_text("100")
    return container


def test_v2_update_grows_memory_only_and_its_oom_events_come_from_memory_events(tmp_path: Path) -> None:
    container = v2_tree(tmp_path)
    v2 = CgroupsV2(str(tmp_path), frozenset({"cpu", "memory"}))
    v2.prepare("c1", ContainerLimits(cpus=0.5, mem_mb=64))
    assert (container / "memory.max").read_text() == str(64 * MB)
    v2.update("c1", ContainerLimits(cpus=1.0, mem_mb=32))
    assert (container / "memory.max").read_text() == str(64 * MB)  # never lowered below what may be in use
    assert (container / "cpu.weight").read_text() == "100"
    v2.update("c1", ContainerLimits(cpus=1.0, mem_mb=128))
    assert (container / "memory.max").read_text() == str(128 * MB)
    source = v2.oom_events("c1")
    assert isinstance(source, MemoryEventsWatch)
    assert v2.limitation("c1") is None
    (container / "memory.events").write_text("oom 1\noom_kill 1\n")
    select.select([source], [], [], 5)
    assert source.fired() == ["c1"]
    limitation = v2.limitation("c1")
    assert limitation is not None and limitation.message.startswith("Memory limit exceeded: Requested: 128MB")
    assert CgroupsV2(str(tmp_path), frozenset({"cpu"})).oom_events("c1") is None  # no memory controller
    source.close()


# ---- cgroup v1: an eventfd on memory.oom_control ----


def v1_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to write cgroups"
    return None if "memory" in LAYOUT.v1 and "cpu" in LAYOUT.v1 else "no cgroup v1 memory and cpu hierarchies"


@pytest.fixture
def v1_bases() -> Iterator[dict[str, str]]:
    name = f"butte-oom-{uuid.uuid4().hex[:8]}"
    bases = {controller: os.path.join(LAYOUT.v1[controller], name) for controller in ("cpu", "memory")}
    yield bases
    for base in bases.values():
        if os.path.isdir(base):
            os.rmdir(base)


@pytest.mark.skipif(v1_missing() is not None, reason=str(v1_missing()))
def test_v1_eventfd_fires_on_oom_and_update_grows_memory_only(v1_bases: dict[str, str]) -> None:
    isolation = Isolation([CgroupsV1(v1_bases)], ["cgroups/mem"])
    assert isolation.prepare("c1", ContainerLimits(cpus=0.5, mem_mb=32)) is True
    assert isolation.prepare("c1", ContainerLimits(cpus=0.5, mem_mb=32)) is False  # a group's next task
    [source] = isolation.oom_events("c1")
    assert isinstance(source, OomEventFds) and source.fired() == [] and source.watched() == ["c1"]
    child = subprocess.Popen([*isolation.prelude("c1"), *HOG], start_new_session=True)
    assert select.select([source], [], [], 30)[0] == [source]  # before the child is even reaped
    assert source.fired() == ["c1"]
    assert child.wait(timeout=30) != 0
    assert isolation.limitation("c1") is not None
    memory = Path(v1_bases["memory"], "c1", "memory.limit_in_bytes")
    isolation.update("c1", ContainerLimits(cpus=1.0, mem_mb=16))
    assert int(memory.read_text()) == 32 * MB  # lowering the hard limit could OOM the container: kept
    assert int(Path(v1_bases["cpu"], "c1", "cpu.shares").read_text()) == 1024
    isolation.update("c1", ContainerLimits(cpus=1.0, mem_mb=48))
    assert int(memory.read_text()) == 48 * MB
    assert isolation.usage("c1")["cpus_limit"] == 1.0
    assert source.unwatch("c1") is False  # the epoll set stays for containers to come
    assert source.watched() == []
    source.close()
    isolation.destroy("c1")


@pytest.mark.skipif(v1_missing() is not None, reason=str(v1_missing()))
def test_v1_eventfds_share_one_epoll_set_and_name_only_the_container_that_hit_oom(v1_bases: dict[str, str]) -> None:
    isolation = Isolation([CgroupsV1(v1_bases)], ["cgroups/mem"])
    for container_id in ("quiet", "hog"):
        isolation.prepare(container_id, ContainerLimits(cpus=0.1, mem_mb=32))
    [quiet] = isolation.oom_events("quiet")
    [hog] = isolation.oom_events("hog")
    assert quiet is hog and isinstance(hog, OomEventFds)
    assert sorted(hog.watched()) == ["hog", "quiet"]
    child = subprocess.Popen([*isolation.prelude("hog"), *HOG], start_new_session=True)
    assert select.select([hog], [], [], 30)[0] == [hog]
    assert hog.fired() == ["hog"]
    assert hog.fired() == []  # read once, gone
    child.wait(timeout=30)
    held = os.dup(hog._by_container["quiet"])  # as a child between its fork and its exec holds it
    assert hog.unwatch("quiet") is False and hog.watched() == ["hog"]
    assert hog.unwatch("quiet") is False  # twice is harmless
    os.eventfd_write(held, 1)  # e.g. the kernel saying the cgroup went: no longer in the set
    assert select.select([hog], [], [], 0.1)[0] == [] and hog.fired() == []
    os.close(held)
    hog.close()
    for container_id in ("quiet", "hog"):
        isolation.destroy(container_id)


# ---- the agent's containers: events, confirmation, release ----


class EventFdSource:
    """An event source the test fires by hand."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def fire(self) -> None:
        os.eventfd_write(self.fd, 1)

    def fired(self) -> list[str]:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            return []
        return [self.container_id]

    def unwatch(self, container_id: str) -> bool:
        return True

    def close(self) -> None:
        os.close(self.fd)
        self.closed = True


class Signalling(Isolator):
    """An isolator whose OOM events and limitation the test controls; records updates."""

    name = "signalling"

    def __init__(self) -> None:
        self.sources: dict[str, EventFdSource] = {}
        self.limited: Limitation | None = None
        self.asked = 0
        self.updates: list[ContainerLimits] = []

    def oom_events(self, container_id: str) -> EventFdSource:
        self.sources[container_id] = EventFdSource(container_id)
        return self.sources[container_id]

    def limitation(self, container_id: str) -> Limitation | None:
        self.asked += 1
        return self.limited

    def update(self, container_id: str, limits: ContainerLimits) -> None:
        self.updates.append(limits)


@pytest.fixture
def signalling() -> tuple[Signalling, Containers]:
    isolator = Signalling()
    return isolator, Containers(Isolation([isolator], ["signalling"]), poll_interval_s=3600.0)  # no poll here


async def test_an_oom_event_reaches_the_containers_runner_once_confirmed(
    signalling: tuple[Signalling, Containers],
) -> None:
    isolator, containers = signalling
    heard: list[tuple[str, Limitation]] = []
    containers.hooks("c1", lambda container_id, limitation: heard.append((container_id, limitation)))
    await asyncio.to_thread(containers.preparing("c1", ContainerLimits(mem_mb=64), None))
    await until(lambda: containers.watched() == ["c1"], what="the event source read by the loop")
    isolator.sources["c1"].fire()  # not confirmed by the cgroup: nobody is told
    await until(lambda: isolator.asked == OOM_CONFIRM_TRIES, what="every confirmation try")
    assert heard == []
    isolator.limited = memory_limitation(64 * MB, 64 * MB)
    isolator.sources["c1"].fire()
    await until(lambda: heard, timeout=2, what="the limitation")
    assert heard == [("c1", isolator.limited)]
    containers.release("c1")
    assert isolator.sources["c1"].closed and containers.watched() == []


async def test_a_source_armed_after_its_container_was_released_is_closed(
    signalling: tuple[Signalling, Containers],
) -> None:
    isolator, containers = signalling
    containers.hooks("c1", lambda container_id, limitation: None)
    prepare = containers.preparing("c1", ContainerLimits(), None)
    containers.release("c1")  # e.g. the launch failed right after the container was set up
    await asyncio.to_thread(prepare)
    await until(lambda: "c1" in isolator.sources and isolator.sources["c1"].closed, what="the late source closed")
    assert containers.watched() == []


async def test_updates_before_the_container_is_prepared_apply_when_it_is(
    signalling: tuple[Signalling, Containers],
) -> None:
    isolator, containers = signalling
    containers.hooks("c1", lambda container_id, limitation: None)
    prepare = containers.preparing("c1", ContainerLimits(cpus=0.5, mem_mb=64), None)
    await containers.update("c1", ContainerLimits(cpus=1.0, mem_mb=128))  # the executor is still launching
    assert isolator.updates == []
    await asyncio.to_thread(prepare)
    assert isolator.updates == [ContainerLimits(cpus=1.0, mem_mb=128)]
    await containers.update("c1", ContainerLimits(cpus=1.5, mem_mb=160))
    assert len(isolator.updates) == 2
    assert containers.isolation.usage("c1")["mem_limit_bytes"] == 160 * MB
    containers.release("c1")


class Joining(Signalling):
    """A container the task joins (so it is destroyed off the loop); records destroys."""

    def __init__(self) -> None:
        super().__init__()
        self.destroyed: list[str] = []

    def join_paths(self, container_id: str) -> tuple[str, ...]:
        return (f"/nonexistent/{container_id}/cgroup.procs",)

    def destroy(self, container_id: str) -> None:
        self.destroyed.append(container_id)


async def test_a_container_released_after_the_agent_closed_its_containers_is_still_destroyed() -> None:
    isolator = Joining()
    containers = Containers(Isolation([isolator], ["joining"]), poll_interval_s=3600.0)
    containers.hooks("c1", lambda container_id, limitation: None)
    await asyncio.to_thread(containers.preparing("c1", ContainerLimits(), None))
    containers.close()  # the agent stops; a task ends after its kills
    containers.release("c1")
    assert isolator.destroyed == ["c1"]
