"""A custom executor survives an agent's kill -9: it resubscribes to the restarted agent and keeps its task."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from test_agent_recovery import Framework, agent_ids, all_acknowledged, pid_alive

from butte.scheduler.sdk import SchedulerClient, command_task, offer_resources
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, ExecutorInfo, FrameworkInfo, Offer

pytestmark = [pytest.mark.integration]

# Resubscribes whenever its stream breaks, as pymesos's executor does for a checkpointing framework.
RESUBSCRIBING_EXECUTOR = textwrap.dedent(
    """
    import base64, http.client, json, os, sys, time
    host, port = os.environ["MESOS_AGENT_ENDPOINT"].split(":")
    ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
           "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}
    open("executor.pid", "w").write(str(os.getpid()))
    tasks = {}
    def post(body):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/api/v1/executor", json.dumps({**ids, **body}), {"Content-Type": "application/json"})
        return conn.getresponse()
    def update(task_id, state):
        status = {"task_id": task_id, "state": state, "source": "SOURCE_EXECUTOR",
                  "uuid": base64.b64encode(os.urandom(16)).decode()}
        assert post({"type": "UPDATE", "update": {"status": status}}).status == 202
    def handle(event):
        if event["type"] == "SUBSCRIBED":
            open("subscriptions", "a").write("x")
        elif event["type"] == "LAUNCH":
            task = event["launch"]["task"]
            tasks[task["task_id"]["value"]] = task
            update(task["task_id"], "TASK_RUNNING")
        elif event["type"] == "KILL":
            update(event["kill"]["task_id"], "TASK_KILLED")
            sys.exit(0)
        elif event["type"] == "SHUTDOWN":
            sys.exit(0)
    def follow():
        stream = post({"type": "SUBSCRIBE", "subscribe": {"unacknowledged_tasks": list(tasks.values())}})
        if stream.status != 200:
            raise OSError(stream.status)
        buffer = b""
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                raise OSError("stream closed")
            buffer += chunk
            while b"\\n" in buffer:
                size, _, rest = buffer.partition(b"\\n")
                if len(rest) < int(size):
                    break
                handle(json.loads(rest[: int(size)]))
                buffer = rest[int(size):]
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            follow()
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    """
)


class ExecutorFramework(Framework):
    """Launches one task on the resubscribing executor."""

    def __init__(self, client: SchedulerClient, script: Path, mem_mb: float = 64) -> None:
        # 64 MB: a Python executor's resident memory passes 16 MB, and the agent's memory isolation polls it.
        super().__init__(client, {})
        self.script = script
        self.mem_mb = mem_mb
        self.launched = False

    async def _use(self, offer: Offer) -> None:
        if self.launched or offer_resources(offer).scalar("cpus") < 0.2:
            await self.client.decline([offer.id.value], refuse_seconds=1)
            return
        self.launched = True
        task = command_task("on-executor", offer.agent_id.value, "unused", 0.1, self.mem_mb)
        task.command = None
        task.executor = ExecutorInfo(
            executor_id=ID(value="resubscriber"), command=CommandInfo(value=f"{sys.executable} {self.script}")
        )
        await self.client.launch(offer, [task])


@asynccontextmanager
async def running_executor(
    tmp_path: Path, executor_script: str, name: str, agent_flags: dict[str, str] | None = None
) -> AsyncIterator[tuple[Cluster, ExecutorFramework, Path]]:
    """A one-agent cluster whose checkpointing framework has one task running (and acknowledged) on the
    executor ``executor_script``; yields the cluster, the framework and the executor's sandbox."""
    script = tmp_path / "executor.py"
    script.write_text(executor_script)
    async with Cluster(agents=1, work_dir=tmp_path / "cluster", agent_flags=agent_flags or {}) as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name=name, checkpoint=True)
        client = SchedulerClient(cluster.master_address, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        await client.subscribe(timeout_s=30)
        fw = ExecutorFramework(client, script)
        pump = asyncio.create_task(fw.run())
        try:
            await until(lambda: fw.state_of("on-executor") == "TASK_RUNNING", timeout=30)
            await until(lambda: all_acknowledged(cluster), timeout=10, what="every update acknowledged")
            runs = cluster.agent(0).work_dir / "slaves"
            (sandbox,) = runs.glob("*/frameworks/*/executors/resubscriber/runs/latest")
            yield cluster, fw, sandbox
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()


async def test_custom_executor_resubscribes_after_agent_restart(tmp_path: Path) -> None:
    async with running_executor(tmp_path, RESUBSCRIBING_EXECUTOR, "recovery-executor") as (cluster, fw, sandbox):
        pid = int((sandbox / "executor.pid").read_text())
        (old_id,) = await agent_ids(cluster)

        await cluster.kill_agent(0)
        await cluster.restart_agent(0)
        await until(lambda: (sandbox / "subscriptions").read_text() == "xx", timeout=15, what="resubscription")
        assert pid_alive(pid)
        assert await agent_ids(cluster) == [old_id]

        await fw.client.kill("on-executor")
        await until(lambda: fw.state_of("on-executor") == "TASK_KILLED", timeout=15)
        await until(lambda: not pid_alive(pid), timeout=10, what="the executor to exit")
        assert {key: n for key, n in fw.seen().items() if n > 1} == {}


# Subscribes once; when the agent goes away it never comes back (it just keeps running).
SILENT_AFTER_RESTART_EXECUTOR = RESUBSCRIBING_EXECUTOR.replace(
    "deadline = time.time() + 60\n",
    "try:\n    follow()\nexcept (OSError, http.client.HTTPException):\n    time.sleep(60)\ndeadline = 0\n",
)
assert SILENT_AFTER_RESTART_EXECUTOR != RESUBSCRIBING_EXECUTOR


async def test_a_recovered_executor_that_does_not_resubscribe_in_time_is_killed(tmp_path: Path) -> None:
    flags = {"executor_reregistration_timeout": "1secs"}
    async with running_executor(tmp_path, SILENT_AFTER_RESTART_EXECUTOR, "recovery-silent-executor", flags) as (
        cluster,
        fw,
        sandbox,
    ):
        pid = int((sandbox / "executor.pid").read_text())

        await cluster.kill_agent(0)
        await cluster.restart_agent(0)
        await until(lambda: fw.state_of("on-executor") == "TASK_FAILED", timeout=15, what="the task failed")
        latest = fw.latest("on-executor")
        assert latest is not None and latest.reason == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
        assert latest.message == "Executor did not reregister in time"
        await until(lambda: not pid_alive(pid), timeout=10, what="the executor killed")
        assert (sandbox / "subscriptions").read_text() == "x"  # it never came back
