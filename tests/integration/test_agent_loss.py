"""Agent loss on loopback: an agent paused past its ping window, and an agent the operator marks gone.

Mesos: missed pongs (not a broken stream) make an agent unreachable; once it answers again it reregisters
and a PARTITION_AWARE framework sees its tasks RUNNING again (``PartitionTest.ReregisterSlavePartitionAware``).
MARK_AGENT_GONE answers 200 with an empty body; the agent is told to shut down and kills its tasks, which
become TASK_GONE_BY_OPERATOR (``MasterAPITest.MarkRegisteredAgentGone``, ``TaskUpdatesUponAgentGone``).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from butte.testing.cluster import Cluster
from butte.testing.invariants import RecordingFramework, assert_sound, running_tasks
from butte.testing.wait import until

pytestmark = [pytest.mark.integration]

MASTER_FLAGS = {"agent_ping_timeout": "200ms", "max_agent_ping_timeouts": 3}
TASKS = 2


async def operator_call(master_url: str, call: dict[str, Any]) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{master_url}/api/v1", data=json.dumps(call), headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_an_agent_paused_past_its_pings_is_unreachable_until_it_answers(tmp_path: Path) -> None:
    async with (
        Cluster(agents=1, master_flags=MASTER_FLAGS, work_dir=tmp_path / "cluster") as cluster,
        RecordingFramework(cluster.master_address, partition_aware=True, wanted=TASKS) as framework,
    ):
        await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="the sleepers to run")
        await until(lambda: len(running_tasks(cluster.marker)) == TASKS, timeout=10, what="their processes")
        cluster.agent(0).send_signal(signal.SIGSTOP)
        try:
            await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
            framework.history.sample(running_tasks(cluster.marker))
        finally:
            cluster.agent(0).send_signal(signal.SIGCONT)
        await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="TASK_RUNNING once it answers")
        state = await cluster.master_state()
        assert state["unreachable_slaves"] == 0 and [s["active"] for s in state["slaves"]] == [True]
        assert_sound(framework.history, running_tasks(cluster.marker))


async def test_an_agent_marked_gone_shuts_down_and_its_tasks_are_gone_by_operator(tmp_path: Path) -> None:
    async with (
        Cluster(agents=1, master_flags=MASTER_FLAGS, work_dir=tmp_path / "cluster") as cluster,
        RecordingFramework(cluster.master_address, partition_aware=True, wanted=TASKS) as framework,
    ):
        await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="the sleepers to run")
        framework.history.sample(running_tasks(cluster.marker))
        (slave,) = (await cluster.master_state())["slaves"]
        call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": slave["id"]}}}
        assert await operator_call(cluster.master_url, call) == (200, "")

        await until(lambda: framework.all_in("TASK_GONE_BY_OPERATOR"), timeout=10, what="TASK_GONE_BY_OPERATOR")
        status = framework.latest("sleeper-0")
        assert status is not None and status.reason == "REASON_AGENT_REMOVED_BY_OPERATOR"
        await cluster.agent(0).wait_exit(timeout=20)
        await until(lambda: running_tasks(cluster.marker) == {}, timeout=10, what="the agent's tasks to end")
        assert (await cluster.master_state())["slaves"] == []

        told = len(framework.statuses)
        await framework.client.reconcile([("sleeper-0", slave["id"])])
        await until(lambda: len(framework.statuses) > told, timeout=10, what="the reconciliation answer")
        assert framework.statuses[-1].state == "TASK_GONE_BY_OPERATOR"
        assert_sound(framework.history, running_tasks(cluster.marker))

        unknown = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "no-such-agent"}}}
        assert (await operator_call(cluster.master_url, unknown))[0] == 404
