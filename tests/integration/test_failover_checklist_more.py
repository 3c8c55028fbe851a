"""The master-failover scenarios of the fault checklist (group A, items 6-10), task by task, with real ZooKeeper.

Same set-up and helpers as ``test_failover_checklist.py`` (items 1-5): a 3-node ensemble, masters electing a
leader, agents and :class:`Tracker` frameworks following it; every test ends with the invariant checker.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_failover_checklist import (
    agent_ids,
    all_running,
    assert_all_sound,
    assert_untouched,
    fail_over,
    marks,
    pids,
    tracker,
    zk_registry,
)

from butte.testing.cluster import DEFAULT_AGENT_RESOURCES
from butte.testing.invariants import running_tasks
from butte.testing.ports import free_port
from butte.testing.process import ButteProcess, child_environment
from butte.testing.wait import until
from butte.testing.zookeeper import HaCluster, unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]


async def test_a6_past_the_recovery_removal_limit_no_missing_agent_is_marked(tmp_path: Path) -> None:
    """Checklist A6: too many recovered agents miss the reregistration window; none is marked unreachable.

    Mesos's ``--recovery_agent_removal_limit`` guards against a mass partition looking like mass death (Mesos
    fails over instead; Butte keeps leading and waits). With 1 of 2 agents missing (50% > 40%), the agent stays
    admitted in the registry, nobody is told its tasks are lost, and when it answers it simply reregisters.
    The rate limit of recovered removals (``RateLimitRecoveredSlaveRemoval``) is not applied by Butte yet.
    """
    flags = {"agent_reregister_timeout": "1secs", "recovery_agent_removal_limit": "40%"}
    async with (
        HaCluster(tmp_path, masters=2, agents=2, master_flags=flags) as ha,
        tracker(ha, "plain", partition_aware=False, wanted=2) as plain,
    ):
        before = await all_running(ha, plain)
        processes, mark = pids(ha.marker), marks(plain)
        cut = (await agent_ids(ha))[1]

        ha.agents[1].send_signal(signal.SIGSTOP)
        try:
            _, new = await fail_over(ha, plain, agents=1)
            above = "above --recovery_agent_removal_limit"
            await until(lambda: above in new.log_path.read_text(), timeout=15, what="the removal limit to hold")
            async with zk_registry(ha) as registry:
                assert registry.state_of(cut) == "admitted"
            assert cut not in plain.lost_agents
        finally:
            ha.agents[1].send_signal(signal.SIGCONT)

        await ha.wait_for_agents(timeout_s=20)
        answers = await plain.reconcile(plain.history.launched)
        assert {t: s.state for t, s in answers.items()} == dict.fromkeys(plain.history.launched, "TASK_RUNNING")
        assert_untouched(ha, mark, before, processes, plain)


async def test_a7_reconciling_a_task_of_an_agent_not_yet_back_gets_no_answer(tmp_path: Path) -> None:
    """Checklist A7: explicit reconciliation right after failover, for an agent that has not reregistered yet.

    Mesos ``ReconciliationTest.RecoveredAgent``: no answer (not TASK_LOST) while the agent may still come back.
    Both tasks are asked in one call; the master answers per call in order, so once the answer for the task on
    the agent that is back has arrived, the silence about the other is final. When the paused agent reregisters
    its task is answered RUNNING, and nothing was ever reported lost.
    """
    async with (
        HaCluster(tmp_path, masters=2, agents=2) as ha,
        tracker(ha, "plain", partition_aware=False, wanted=2) as plain,
    ):
        before = await all_running(ha, plain)
        processes, mark = pids(ha.marker), marks(plain)
        agents = await agent_ids(ha)
        (waiting,), (back,) = plain.on(agents[1]), plain.on(agents[0])

        ha.agents[1].send_signal(signal.SIGSTOP)
        try:
            await fail_over(ha, plain, agents=1)
            told = len(plain.statuses)
            answers = await plain.reconcile([back])
            await plain.client.reconcile([(waiting, agents[1]), (back, agents[0])])
            await until(lambda: sum(s.task_id.value == back for s in plain.statuses[told:]) >= 2, timeout=10)
            assert answers[back].state == "TASK_RUNNING"
            assert [s.task_id.value for s in plain.statuses[told:]] == [back, back], "a waiting task was answered"
        finally:
            ha.agents[1].send_signal(signal.SIGCONT)

        await ha.wait_for_agents(timeout_s=20)
        assert (await plain.reconcile([waiting]))[waiting].state == "TASK_RUNNING"
        assert_untouched(ha, mark, before, processes, plain)


async def test_a8_offers_held_at_failover_are_void_and_the_new_leader_offers_again(tmp_path: Path) -> None:
    """Checklist A8: offers outstanding at failover are rescinded; new ones come after reregistration.

    Mesos ``FaultToleranceTest.FrameworkReregister``: offers are not persisted. The framework holds offers for
    both agents through the failover; a task launched on an old offer is TASK_DROPPED and never runs, the new
    leader offers both agents again under new ids, and a task launched on one of those runs.
    """
    async with (
        HaCluster(tmp_path, masters=2, agents=2) as ha,
        tracker(ha, "aware", partition_aware=True, wanted=2, hold_offers=True) as aware,
    ):
        await until(lambda: len({o.agent_id.value for o in aware.offers}) == 2, timeout=15, what="offers held")
        old_offers = list(aware.offers)
        agents = set((await agent_ids(ha)).values())

        await fail_over(ha, aware)
        assert aware.disconnections == 1

        def fresh() -> bool:
            held = aware.offers
            return {o.agent_id.value for o in held} == agents and not {o.id.value for o in held} & {
                o.id.value for o in old_offers
            }

        await until(fresh, timeout=15, what="offers from the new leader for both agents")
        await aware.launch(old_offers[0], ["aware-0"])
        await until(lambda: aware.latest("aware-0") == "TASK_DROPPED", timeout=10, what="the stale launch dropped")
        await aware.launch(aware.offers[0], ["aware-1"])
        await until(lambda: aware.latest("aware-1") == "TASK_RUNNING", timeout=15, what="the fresh launch to run")
        await until(lambda: set(running_tasks(ha.marker)) == {"aware-1"}, timeout=10, what="only aware-1 to run")
        assert [s.state for s in aware.statuses if s.task_id.value == "aware-0"] == ["TASK_DROPPED"]
        assert_all_sound(ha, aware)


async def test_a9_a_task_ending_during_the_failover_reports_its_end_after_it(tmp_path: Path) -> None:
    """Checklist A9: an update sent during the failover reaches the framework after it resubscribes.

    Mesos ``OperationUpdateDuringFailover`` is about offer operations; Butte has none but LAUNCH and
    LAUNCH_GROUP, which end as task updates, so the nearest equivalent is tested: a task killed while no master
    leads is reported TASK_FAILED (the agent keeps the update until a leader takes it); the other runs on.
    """
    async with (
        HaCluster(tmp_path, masters=2, agents=1) as ha,
        tracker(ha, "plain", partition_aware=False, wanted=2, per_agent=2) as plain,
    ):
        await all_running(ha, plain)
        processes, mark = pids(ha.marker), marks(plain)
        ended, kept = plain.history.launched

        leader = await ha.wait_for_leader()
        await ha.kill_master(leader)
        os.kill(processes[ended], signal.SIGKILL)  # its update is sent while no master leads
        await ha.wait_for_leader(other_than=leader, timeout_s=20)
        await until(lambda: plain.resubscriptions >= 1, timeout=20, what="the framework to resubscribe")
        await until(lambda: plain.latest(ended) == "TASK_FAILED", timeout=30, what="the update sent in failover")

        assert plain.told_since(mark[plain.name], ended) == ["TASK_FAILED"]
        assert (await plain.reconcile([kept]))[kept].state == "TASK_RUNNING"
        assert plain.told_since(mark[plain.name], kept) == ["TASK_RUNNING"]  # the reconciliation answer only
        assert pids(ha.marker) == {kept: processes[kept]}
        assert_all_sound(ha, plain)


def extra_agent(ha: HaCluster, name: str) -> ButteProcess:
    """One more agent following the leader through ZooKeeper, swept up with the cluster's own."""
    port = free_port()
    work_dir = ha.work_dir / name
    argv = ["agent", "--ip=127.0.0.1", f"--port={port}", f"--work_dir={work_dir}"]
    argv += [f"--resources={DEFAULT_AGENT_RESOURCES}", f"--master={ha.zk_url}"]
    agent = ButteProcess(name, argv, port, work_dir, child_environment(ha.marker))
    ha.agents.append(agent)
    return agent


async def test_a10_agent_ids_stay_unique_when_a_master_leads_again(tmp_path: Path) -> None:
    """Checklist A10: agent ids are never reused across failovers.

    Mesos ``MasterTest.DuplicatedSlaveIdWhenSlaveReregister``. Butte's master keeps its master id for the life
    of its process and may lead twice (it steps down in-process when its session expires, where Mesos's master
    aborts): the leader pauses past its session, the standby leads, the old one resumes as a standby, the
    standby is killed, and the old master leads again. An agent registering then must get a new id, not the one
    it handed out in its first term; the first agent's task is untouched.
    """
    async with (
        HaCluster(tmp_path, masters=2, agents=1, zk_session_timeout="2secs") as ha,
        tracker(ha, "plain", partition_aware=False, wanted=1) as plain,
    ):
        before = await all_running(ha, plain)
        processes, mark = pids(ha.marker), marks(plain)
        first = await ha.wait_for_leader()

        await fail_over(ha, plain, pause=True)
        _, again = await fail_over(ha, plain)
        assert again is first
        newcomer = extra_agent(ha, "agent-new")
        newcomer.start()
        await ha.wait_for_agents(timeout_s=20)

        state = await ha.state_of(first)
        ids = [s["id"] for s in state["slaves"]]
        assert len(ids) == 2 and len(set(ids)) == 2, ids
        async with zk_registry(ha) as registry:
            assert sorted(registry.agents()) == sorted(ids)  # two agents ever admitted, two records
        answers = await plain.reconcile(plain.history.launched)
        assert {t: s.state for t, s in answers.items()} == {"plain-0": "TASK_RUNNING"}
        assert_untouched(ha, mark, before, processes, plain)
