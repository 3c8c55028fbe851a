"""Custom executors isolated as command tasks are: their own cgroups (grown as tasks join), a pid namespace,
usage in /monitor/statistics and GET_CONTAINERS, and an OOM in the container failing the executor's tasks.

A real agent runs in this process against the scripted master of test_agent_service, as root on this host's
cgroups (skipped with the reason where the host cannot).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from test_agent_service import FRAMEWORK_ID, FakeMaster, make_config, master, run_task
from test_isolation import remove_cgroups_root

from butte.agent.service import Agent
from butte.containerizer.isolators import detect_cgroups
from butte.containerizer.isolators.base import read_int, read_keyed
from butte.scheduler.tasks import scalar_resources
from butte.testing.wait import until
from butte.wire.agent_link import AgentEvent, ExecutorRef
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, DurationInfo, ExecutorInfo, TaskInfo
from butte.wire.resources import resources_to_wire

__all__ = ["master"]  # the fixture pytest finds by name

MB = 1024 * 1024
ISOLATION = "cgroups/cpu,cgroups/mem,namespaces/pid"
ROOT = f"butte-exec-{os.getpid()}"
LAYOUT = detect_cgroups()
# Writes 200 MB for real (b"x" * n touches every page).
HOG = f"{sys.executable} -c 'x = b\"x\" * (200 * 1024 * 1024); import time; time.sleep(60)'"

# Runs each task's command (base64 in TaskInfo.data) as its child and reports it RUNNING; reports nothing when
# a child dies, so what the framework hears of an OOM comes from the agent. Writes its own pid and how many
# processes it can see (its pid namespace) to "pidns".
EXECUTOR_SCRIPT = textwrap.dedent(
    """
    import base64, http.client, json, os, subprocess, sys
    host, port = os.environ["MESOS_AGENT_ENDPOINT"].split(":")
    ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
           "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}
    def post(body):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/api/v1/executor", json.dumps({**ids, **body}), {"Content-Type": "application/json"})
        return conn, conn.getresponse()
    def update(task_id, state):
        status = {"task_id": task_id, "state": state, "source": "SOURCE_EXECUTOR",
                  "uuid": base64.b64encode(os.urandom(16)).decode()}
        post({"type": "UPDATE", "update": {"status": status}})
    visible = len([name for name in os.listdir("/proc") if name.isdigit()])
    with open("pidns", "w") as out:
        out.write(f"{os.getpid()} {visible}")
    conn, stream = post({"type": "SUBSCRIBE", "subscribe": {}})
    buffer = b""
    while True:
        while b"\\n" not in buffer:
            buffer += stream.read1(65536)
        size, _, buffer = buffer.partition(b"\\n")
        while len(buffer) < int(size):
            buffer += stream.read1(65536)
        event, buffer = json.loads(buffer[:int(size)]), buffer[int(size):]
        if event["type"] == "LAUNCH":
            task = event["launch"]["task"]
            subprocess.Popen(base64.b64decode(task["data"]).decode(), shell=True)
            update(task["task_id"], "TASK_RUNNING")
        elif event["type"] == "SHUTDOWN":
            sys.exit(0)
    """
)


def memory_dir(container_id: str) -> Path | None:
    """The container's memory cgroup: on v2 where the memory controller is there, else on v1."""
    if "memory" in LAYOUT.v2_controllers and LAYOUT.v2 is not None:
        return Path(LAYOUT.v2, ROOT, container_id)
    return Path(LAYOUT.v1["memory"], ROOT, container_id) if "memory" in LAYOUT.v1 else None


def on_v2(directory: Path) -> bool:
    return LAYOUT.v2 is not None and directory.is_relative_to(LAYOUT.v2)


def memory_limit(container_id: str) -> int | None:
    directory = memory_dir(container_id)
    assert directory is not None
    return read_int(str(directory / ("memory.max" if on_v2(directory) else "memory.limit_in_bytes")))


def oom_kills(container_id: str) -> int:
    directory = memory_dir(container_id)
    assert directory is not None
    return read_keyed(str(directory / ("memory.events" if on_v2(directory) else "memory.oom_control"))).get(
        "oom_kill", 0
    )


def cannot_isolate() -> str | None:
    """Why this host cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root to write cgroups and make pid namespaces"
    if memory_dir("x") is None or ("cpu" not in LAYOUT.v1 and "cpu" not in LAYOUT.v2_controllers):
        return "no cgroup cpu and memory controllers on this host"
    return None


pytestmark = [pytest.mark.integration, pytest.mark.skipif(cannot_isolate() is not None, reason=str(cannot_isolate()))]


@pytest.fixture
async def agent(master: tuple[FakeMaster, str], tmp_path: Path) -> AsyncIterator[Agent]:
    _, address = master
    config = make_config(address, tmp_path / "agent", isolation=ISOLATION, cgroups_root=ROOT, cgroups_enable_cfs=True)
    running = Agent(config)
    await running.start()
    await until(lambda: running.agent_info.id is not None, timeout=5)
    yield running
    await running.stop()
    remove_cgroups_root(ROOT)


def executor_task(task_id: str, tmp_path: Path, command: str, cpus: float, mem_mb: float) -> TaskInfo:
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR_SCRIPT)
    executor = ExecutorInfo(
        executor_id=ID(value="exec-1"),
        command=CommandInfo(value=f"{sys.executable} {script}"),
        resources=resources_to_wire(scalar_resources(0.1, 32.0, 0.0)),
        shutdown_grace_period=DurationInfo(nanoseconds=500_000_000),
    )
    return TaskInfo(
        name=task_id,
        task_id=ID(value=task_id),
        agent_id=ID(value="M-S0"),
        executor=executor,
        resources=resources_to_wire(scalar_resources(cpus, mem_mb, 0.0)),
        data=base64.b64encode(command.encode()).decode(),
    )


def container_of(agent: Agent) -> str:
    executor = agent.state.executor(FRAMEWORK_ID, "exec-1")
    assert executor is not None and executor.container_id
    return executor.container_id


def sandbox(agent: Agent) -> Path:
    return Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/exec-1/runs/latest"


def cpu_file(container_id: str, name: str) -> int | None:
    return read_int(os.path.join(LAYOUT.v1["cpu"], ROOT, container_id, name)) if "cpu" in LAYOUT.v1 else None


async def test_a_custom_executor_runs_in_its_own_container(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    fake.send(run_task(executor_task("t1", tmp_path, "sleep 60", cpus=0.5, mem_mb=64)))
    await until(lambda: fake.states("t1") == ["TASK_RUNNING"], timeout=15)
    container_id = container_of(agent)
    memory = memory_dir(container_id)
    assert memory is not None and memory_limit(container_id) == 96 * MB  # the executor's 32 MB + the task's 64
    if "cpu" in LAYOUT.v1:
        assert cpu_file(container_id, "cpu.shares") == int(0.6 * 1024)
        assert cpu_file(container_id, "cpu.cfs_quota_us") == 60_000
    # The executor process itself is in the cgroup, in a pid namespace of its own.
    script = str(tmp_path / "executor.py")
    members = (memory / "cgroup.procs").read_text().split()
    assert any(script in Path(f"/proc/{pid}/cmdline").read_text() for pid in members)
    own_pid, visible = await until(lambda: (sandbox(agent) / "pidns").read_text().split(), ignore=(OSError,))
    assert int(own_pid) <= 3 and int(visible) <= 4  # init, sh, the executor (the host has many more)
    # A second task grows the container, as Mesos's containerizer update() does.
    fake.send(run_task(executor_task("t2", tmp_path, "sleep 60", cpus=0.5, mem_mb=64)))
    await until(lambda: fake.states("t2") == ["TASK_RUNNING"], timeout=15)
    await until(lambda: memory_limit(container_id) == 160 * MB, what="the memory limit raised")
    if "cpu" in LAYOUT.v1:
        assert cpu_file(container_id, "cpu.shares") == int(1.1 * 1024)
    await check_monitor(agent, container_id)
    ref = ExecutorRef(framework_id=ID(value=FRAMEWORK_ID), executor_id=ID(value="exec-1"))
    fake.send(AgentEvent(type="SHUTDOWN_EXECUTOR", shutdown_executor=ref))
    await until(lambda: not memory.exists(), timeout=15, what="the executor's container removed")


async def check_monitor(agent: Agent, container_id: str) -> None:
    url = f"http://127.0.0.1:{agent.agent_info.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/monitor/statistics") as response:
            entries = await response.json()
        [entry] = [entry for entry in entries if entry["executor_id"] == "exec-1"]
        assert entry["statistics"]["mem_limit_bytes"] == 160 * MB
        assert entry["statistics"]["cpus_limit"] == pytest.approx(1.1)
        assert entry["statistics"]["processes"] >= 3  # init, the executor, its tasks
        async with session.post(f"{url}/api/v1", json={"type": "GET_CONTAINERS"}) as response:
            containers = (await response.json())["get_containers"]["containers"]
        [container] = [c for c in containers if c["executor_id"]["value"] == "exec-1"]
        assert container["container_id"]["value"] == container_id
        assert container["resource_statistics"]["mem_limit_bytes"] == 160 * MB


class OomClock:
    """Notes when the container's cgroup first counts an OOM kill, looking every millisecond."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.seen_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.001):
            if oom_kills(self.container_id) > 0:
                self.seen_at = time.monotonic()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def failed_at(fake: FakeMaster, task_id: str, timeout_s: float) -> float:
    """When the scripted master got the task's TASK_FAILED, looking every millisecond."""
    give_up_at = time.monotonic() + timeout_s
    while "TASK_FAILED" not in fake.states(task_id):
        assert time.monotonic() < give_up_at, f"no TASK_FAILED for {task_id}: {fake.states(task_id)}"
        await asyncio.sleep(0.001)
    return time.monotonic()


async def oom_to_failed_s(fake: FakeMaster, agent: Agent, tmp_path: Path) -> tuple[str, float]:
    """Run a hog next to a calm task under one executor: its container, the seconds from OOM kill to TASK_FAILED."""
    fake.send(run_task(executor_task("calm", tmp_path, "sleep 60", cpus=0.1, mem_mb=32)))
    await until(lambda: fake.states("calm") == ["TASK_RUNNING"], timeout=15)
    container_id = container_of(agent)
    clock = OomClock(container_id)
    try:
        fake.send(run_task(executor_task("hog", tmp_path, HOG, cpus=0.1, mem_mb=64)))
        failed = await failed_at(fake, "hog", timeout_s=20)
    finally:
        clock.stop()
    assert clock.seen_at is not None
    return container_id, failed - clock.seen_at


async def test_a_task_over_the_memory_limit_fails_the_executors_tasks_with_the_limitation(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    container_id, latency_s = await oom_to_failed_s(fake, agent, tmp_path)
    hog = next(status for status in fake.updates if status.task_id.value == "hog" and status.state == "TASK_FAILED")
    assert hog.reason == "REASON_CONTAINER_LIMITATION_MEMORY" and hog.source == "SOURCE_AGENT"
    assert hog.message is not None and hog.message.startswith("Memory limit exceeded: Requested: 128MB")
    # The container is destroyed: its other task fails with the same reason, and the master hears of the exit.
    await until(lambda: "TASK_FAILED" in fake.states("calm"))
    calm = [status for status in fake.updates if status.task_id.value == "calm"][-1]
    assert calm.reason == "REASON_CONTAINER_LIMITATION_MEMORY"
    await until(lambda: [call for call in fake.calls if call.type == "EXECUTOR_EXITED"])
    memory = memory_dir(container_id)
    assert memory is not None
    await until(lambda: not memory.exists(), what="the container's cgroups removed")
    print(f"oom_to_task_failed_ms: {latency_s * 1000:.1f}")
    assert latency_s < 0.5  # the kernel's event, not the 1 s poll (which averages 500 ms)
