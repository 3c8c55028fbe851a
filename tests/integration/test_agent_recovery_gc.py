"""Sandbox GC with a real agent: a sandbox stays until its task's end is acknowledged, then goes after --gc_delay."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_agent_recovery import Framework

from butte.scheduler.sdk import SchedulerClient
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.mesos import FrameworkInfo

pytestmark = [pytest.mark.integration]


async def test_sandbox_is_collected_only_after_the_acknowledgement_and_the_delay(tmp_path: Path) -> None:
    flags = {"gc_delay": "1secs", "disk_watch_interval": "1mins"}
    async with Cluster(agents=1, work_dir=tmp_path / "cluster", agent_flags=flags) as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name="gc")
        client = SchedulerClient(cluster.master_address, info, auto_acknowledge=False)
        await client.subscribe(timeout_s=30)
        fw = Framework(client, {"done": "echo bye"})
        pump = asyncio.create_task(fw.run())
        try:
            for state in ("TASK_STARTING", "TASK_RUNNING"):  # one update at a time reaches us: ack each
                await until(lambda s=state: fw.state_of("done") == s, timeout=30, what=state)  # type: ignore[misc]
                latest = fw.latest("done")
                assert latest is not None
                await client.acknowledge(latest)
            await until(lambda: fw.state_of("done") == "TASK_FINISHED", timeout=30)
            slaves = cluster.agent(0).work_dir / "slaves"
            (sandbox,) = slaves.glob("*/frameworks/*/executors/done/runs/latest")
            sandbox = sandbox.resolve()
            # Its end is not acknowledged, so the framework may still read it: the executor is not retired
            # (only a retired executor's sandbox is scheduled for collection).
            state = await cluster.get_json("/state", base_url=cluster.agent(0).url)
            assert [e["id"] for f in state["frameworks"] for e in f["executors"]] == ["done"]
            assert (sandbox / "stdout").read_text() == "bye\n"
            final = fw.latest("done")
            assert final is not None
            await client.acknowledge(final)
            await until(lambda: not sandbox.exists(), timeout=10, what="the sandbox to be collected")
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()
