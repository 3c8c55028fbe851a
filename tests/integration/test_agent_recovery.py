"""Agent recovery across agent restarts, with real processes (reference: fault-tolerance §1.3, checklist C).

Each test runs a checkpointing framework (unless it says otherwise) on a one-agent cluster, kills the agent
with SIGKILL while tasks run, and starts it again on the same work dir.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from butte.scheduler.sdk import SchedulerClient, command_task, offer_resources
from butte.testing.cluster import Cluster
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import Capability, ExecutorInfo, FrameworkInfo, Offer, TaskStatus
from butte.wire.scheduler import Event

pytestmark = [pytest.mark.integration]


class Framework:
    """Launches the commands it is given, one task per offer, and records every update it sees."""

    def __init__(self, client: SchedulerClient, commands: dict[str, str]) -> None:
        self.client = client
        self.to_launch = dict(commands)
        self.statuses: list[TaskStatus] = []

    def latest(self, task_id: str) -> TaskStatus | None:
        mine = [s for s in self.statuses if s.task_id.value == task_id]
        return mine[-1] if mine else None

    def state_of(self, task_id: str) -> str | None:
        latest = self.latest(task_id)
        return latest.state if latest else None

    def seen(self) -> Counter[tuple[str, str]]:
        return Counter((s.task_id.value, s.state) for s in self.statuses)

    async def run(self) -> None:
        async for event in self.client.events():
            if not isinstance(event, Event):
                continue
            if event.type == "OFFERS" and event.offers is not None:
                for offer in event.offers.offers:
                    await self._use(offer)
            elif event.type == "UPDATE" and event.update is not None:
                self.statuses.append(event.update.status)

    async def _use(self, offer: Offer) -> None:
        if not self.to_launch or offer_resources(offer).scalar("cpus") < 0.1:
            await self.client.decline([offer.id.value], refuse_seconds=1)
            return
        tasks = [command_task(tid, offer.agent_id.value, cmd, 0.1, 16) for tid, cmd in self.to_launch.items()]
        self.to_launch.clear()
        await self.client.launch(offer, tasks)


@asynccontextmanager
async def framework(master: str, commands: dict[str, str], *, checkpoint: bool = True) -> AsyncIterator[Framework]:
    name = "recovery-checkpointing" if checkpoint else "recovery-plain"
    info = FrameworkInfo(user=os.environ.get("USER", "root"), name=name, checkpoint=checkpoint)
    client = SchedulerClient(master, info, initial_backoff_s=0.1, max_backoff_s=0.5)
    await client.subscribe(timeout_s=30)
    recorder = Framework(client, commands)
    pump = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await client.close()


def journal_counts(cluster: Cluster) -> Counter[str]:
    path = cluster.agent(0).work_dir / "meta" / "journal"
    lines = path.read_bytes().splitlines() if path.exists() else []
    return Counter(json.loads(line)["k"] for line in lines if line.strip())


def all_acknowledged(cluster: Cluster) -> bool:
    counts = journal_counts(cluster)
    return counts["update"] > 0 and counts["update"] == counts["ack"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"


async def agent_ids(cluster: Cluster) -> list[str]:
    return [slave["id"] for slave in (await cluster.master_state())["slaves"] if slave.get("active", True)]


def sleeper(pid_file: Path) -> str:
    return f"echo $$ > {pid_file}; exec sleep 300"


async def test_reconnect_reattaches_and_reports_what_ended_meanwhile(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    commands = {
        "sleeper": sleeper(tmp_path / "sleeper.pid"),
        "exits-3": f"echo $$ > {tmp_path / 'exits.pid'}; while [ ! -e {flag} ]; do sleep 0.05; done; exit 3",
    }
    async with (
        Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster,
        framework(cluster.master_address, commands) as fw,
        framework(cluster.master_address, {"plain": sleeper(tmp_path / "plain.pid")}, checkpoint=False) as plain,
    ):
        await until(lambda: {fw.state_of(t) for t in commands} == {"TASK_RUNNING"}, timeout=30)
        await until(lambda: plain.state_of("plain") == "TASK_RUNNING", timeout=30)
        await until(lambda: all_acknowledged(cluster), timeout=10, what="every update acknowledged")
        await until(lambda: (tmp_path / "plain.pid").exists(), timeout=5)
        (old_id,) = await agent_ids(cluster)
        sleeper_pid = int((tmp_path / "sleeper.pid").read_text())
        exits_pid = int((tmp_path / "exits.pid").read_text())
        plain_pid = int((tmp_path / "plain.pid").read_text())

        await cluster.kill_agent(0)
        flag.touch()  # the second task ends while its agent is down
        await until(lambda: not pid_alive(exits_pid), timeout=10, what="the task to exit")
        await cluster.restart_agent(0)

        assert await agent_ids(cluster) == [old_id]
        assert pid_alive(sleeper_pid)
        await until(lambda: fw.state_of("exits-3") == "TASK_FAILED", timeout=15)
        ended = fw.latest("exits-3")
        assert ended is not None and ended.message == "Command exited with status 3"
        state = await cluster.master_state()
        mine = [f for f in state["frameworks"] if f["name"] == "recovery-checkpointing"]
        assert [t["state"] for f in mine for t in f["tasks"]] == ["TASK_RUNNING"]
        # Mesos recovers only checkpointing frameworks: the other's task is killed, and the master calls it gone.
        await until(lambda: not pid_alive(plain_pid), timeout=10, what="the plain task to be killed")
        await until(lambda: plain.state_of("plain") in ("TASK_LOST", "TASK_DROPPED"), timeout=15)

        await fw.client.kill("sleeper")  # the reattached task is still the agent's to kill
        await until(lambda: fw.state_of("sleeper") == "TASK_KILLED", timeout=15)
        await until(lambda: not pid_alive(sleeper_pid), timeout=10)
        duplicates = {key: n for key, n in fw.seen().items() if n > 1}
        assert duplicates == {}


async def test_unacknowledged_update_is_sent_again_after_restart(tmp_path: Path) -> None:
    commands = {"quick": "exit 0"}
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name="no-acks", checkpoint=True)
        client = SchedulerClient(cluster.master_address, info, auto_acknowledge=False)
        await client.subscribe(timeout_s=30)
        recorder = Framework(client, commands)
        pump = asyncio.create_task(recorder.run())
        try:
            await until(lambda: recorder.state_of("quick") is not None, timeout=30)
            first = recorder.latest("quick")
            assert first is not None and first.state == "TASK_STARTING"
            before = len(recorder.statuses)
            await cluster.kill_agent(0)
            await cluster.restart_agent(0)
            await until(lambda: len(recorder.statuses) > before, timeout=15, what="the update sent again")
            again = recorder.statuses[before]
            assert (again.state, again.uuid) == (first.state, first.uuid)
            for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
                await until(lambda s=state: recorder.state_of("quick") == s, timeout=15, what=state)  # type: ignore[misc]
                latest = recorder.latest("quick")
                assert latest is not None
                await client.acknowledge(latest)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()


async def test_changed_agent_info_is_refused_then_cleanup_kills_reports_and_registers_anew(tmp_path: Path) -> None:
    commands = {"sleeper": sleeper(tmp_path / "sleeper.pid")}
    async with (
        Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster,
        framework(cluster.master_address, commands) as fw,
    ):
        await until(lambda: fw.state_of("sleeper") == "TASK_RUNNING", timeout=30)
        await until(lambda: (tmp_path / "sleeper.pid").exists(), timeout=5)
        pid = int((tmp_path / "sleeper.pid").read_text())
        (old_id,) = await agent_ids(cluster)
        await cluster.kill_agent(0)
        cluster.agent(0).argv.append("--attributes=rack:elsewhere")
        await cluster.restart_agent(0, wait=False)
        assert await cluster.agent(0).wait_exit(30) == 1  # --strict: a changed AgentInfo is not recovered
        assert "differs" in cluster.agent(0).log_tail()
        assert pid_alive(pid)

        cluster.agent(0).argv[-1] = "--recover=cleanup"
        await cluster.restart_agent(0)
        await until(lambda: not pid_alive(pid), timeout=10, what="the task to be killed")
        await until(lambda: fw.state_of("sleeper") == "TASK_KILLED", timeout=15)
        killed = fw.latest("sleeper")
        assert killed is not None and "--recover=cleanup" in (killed.message or "")
        assert old_id not in await agent_ids(cluster)


async def test_reboot_registers_a_new_agent_and_reports_tasks_lost(tmp_path: Path) -> None:
    commands = {"sleeper": sleeper(tmp_path / "sleeper.pid")}
    async with (
        Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster,
        framework(cluster.master_address, commands) as fw,
    ):
        await until(lambda: fw.state_of("sleeper") == "TASK_RUNNING", timeout=30)
        (old_id,) = await agent_ids(cluster)
        await cluster.kill_agent(0)
        meta = cluster.agent(0).work_dir / "meta" / "agent.json"
        checkpoint = json.loads(meta.read_text())
        meta.write_text(json.dumps({**checkpoint, "boot_id": "an-earlier-boot"}))
        await cluster.restart_agent(0)
        await until(lambda: fw.state_of("sleeper") == "TASK_LOST", timeout=15)
        assert old_id not in await agent_ids(cluster)


class GroupFramework(Framework):
    """Launches its commands as one task group under the default executor."""

    async def _use(self, offer: Offer) -> None:
        if not self.to_launch or offer_resources(offer).scalar("cpus") < 0.3:
            await self.client.decline([offer.id.value], refuse_seconds=1)
            return
        tasks = [command_task(tid, offer.agent_id.value, cmd, 0.1, 16) for tid, cmd in self.to_launch.items()]
        self.to_launch.clear()
        await self.client.launch_group(offer, ExecutorInfo(executor_id=ID(value="group"), type="DEFAULT"), tasks)


async def test_task_group_is_reattached_task_by_task(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    commands = {
        "member-sleeps": sleeper(tmp_path / "member.pid"),
        "member-finishes": f"while [ ! -e {flag} ]; do sleep 0.05; done; exit 0",
    }
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        info = FrameworkInfo(user=os.environ.get("USER", "root"), name="recovery-group", checkpoint=True)
        client = SchedulerClient(cluster.master_address, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        await client.subscribe(timeout_s=30)
        fw = GroupFramework(client, commands)
        pump = asyncio.create_task(fw.run())
        try:
            await until(lambda: {fw.state_of(t) for t in commands} == {"TASK_RUNNING"}, timeout=30)
            await until(lambda: all_acknowledged(cluster), timeout=10, what="every update acknowledged")
            pid = int((tmp_path / "member.pid").read_text())
            await cluster.kill_agent(0)
            flag.touch()
            await cluster.restart_agent(0)
            await until(lambda: fw.state_of("member-finishes") == "TASK_FINISHED", timeout=15)
            assert pid_alive(pid) and fw.state_of("member-sleeps") == "TASK_RUNNING"  # a success kills no one
            await client.kill("member-sleeps")
            await until(lambda: fw.state_of("member-sleeps") == "TASK_KILLED", timeout=15)
            assert {key: n for key, n in fw.seen().items() if n > 1} == {}
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()


async def test_a_kill_under_way_when_the_agent_died_is_finished_after_restart(tmp_path: Path) -> None:
    pid_file = tmp_path / "stubborn.pid"
    commands = {"stubborn": f"trap '' TERM; echo $$ > {pid_file}; while true; do sleep 0.1; done"}
    async with Cluster(agents=1, work_dir=tmp_path / "cluster") as cluster:
        info = FrameworkInfo(
            user=os.environ.get("USER", "root"),
            name="recovery-killing",
            checkpoint=True,
            capabilities=[Capability(type="TASK_KILLING_STATE")],
        )
        client = SchedulerClient(cluster.master_address, info, initial_backoff_s=0.1, max_backoff_s=0.5)
        await client.subscribe(timeout_s=30)
        fw = Framework(client, commands)
        pump = asyncio.create_task(fw.run())
        try:
            await until(lambda: fw.state_of("stubborn") == "TASK_RUNNING" and pid_file.exists(), timeout=30)
            pid = int(pid_file.read_text())
            await client.kill("stubborn", grace_period_s=60)  # it ignores SIGTERM: the kill waits
            await until(lambda: fw.state_of("stubborn") == "TASK_KILLING", timeout=15)
            await until(lambda: all_acknowledged(cluster), timeout=10, what="every update acknowledged")
            await cluster.kill_agent(0)
            await cluster.restart_agent(0)
            await until(lambda: fw.state_of("stubborn") == "TASK_KILLED", timeout=20)
            assert not pid_alive(pid)
            assert {key: n for key, n in fw.seen().items() if n > 1} == {}
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await client.close()
