"""Checklist B21: registry GC of unreachable agents by age and by count, and an agent coming back after it.

Mesos (``PartitionTest.RegistryGcByAge``, ``RegistryGcByCountManySlaves``, ``RegistryGcRace``): every
``--registry_gc_interval`` the leader drops from its registry, and then from its books, the agents marked
unreachable longer than ``--registry_max_agent_age`` ago and the oldest beyond ``--registry_max_agent_count``;
reconciliation then answers TASK_UNKNOWN for their tasks. Since Mesos 1.5 such an agent may come back: it is
admitted with the tasks it reports, and nothing is killed. The race of a prune with a reregistration is settled
by the registry (the prune drops only agents still marked): ``tests/unit/test_master_registry_gc.py`` interleaves the
two steps by hand, since in the shell a GC pass and a reregistration each run whole on the loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_master_api_kit import command_task, framework_info, running_master, subscribe_call
from test_partition_checklist import accept, wire_task

from butte.testing.invariants import RecordingFramework, assert_sound, running_tasks
from butte.testing.netns import Namespace, PartitionCluster, unavailable_reason
from butte.testing.wait import until

pytestmark = [pytest.mark.integration]
UNAVAILABLE = unavailable_reason()
needs_netns = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"network namespaces unavailable: {UNAVAILABLE}")

# Unreachable after 3 missed pings of 200 ms; GC every 0.2 s of agents marked more than 1 s ago.
MASTER_FLAGS = {
    "agent_ping_timeout": "200ms",
    "max_agent_ping_timeouts": 3,
    "registry_gc_interval": "0.2secs",
    "registry_max_agent_age": "1secs",
}
TASKS = 2


@needs_netns
async def test_checklist_b21_agent_unreachable_longer_than_max_age_is_forgotten_then_readmitted(
    tmp_path: Path,
) -> None:
    """Checklist B21 (Mesos ``RegistryGcByAge``): real processes, the agent in its own network namespace."""
    with Namespace.create() as namespace:
        async with (
            PartitionCluster(namespace, tmp_path / "cluster", master_flags=MASTER_FLAGS) as cluster,
            RecordingFramework(cluster.master_address, partition_aware=True, wanted=TASKS) as framework,
        ):
            await until(lambda: framework.all_in("TASK_RUNNING"), timeout=30, what="the sleepers to run")
            await until(lambda: len(running_tasks(cluster.marker)) == TASKS, timeout=10, what="their processes")
            framework.history.sample(running_tasks(cluster.marker))
            agent_id = await cluster.wait_for_agent()
            launched = framework.history.launched

            cluster.cut()
            await until(lambda: framework.all_in("TASK_UNREACHABLE"), timeout=10, what="TASK_UNREACHABLE")
            await until(lambda: _forgotten(cluster), timeout=10, what="the registry GC to forget the agent")

            told = len(framework.statuses)
            await framework.client.reconcile([(t, agent_id) for t in launched])
            await until(lambda: len(framework.statuses) >= told + TASKS, timeout=10, what="reconciliation answers")
            assert {s.state for s in framework.statuses[told:]} == {"TASK_UNKNOWN"}
            framework.history.sample(running_tasks(cluster.marker))  # still running behind the cut

            cluster.heal()
            assert await cluster.wait_for_agent() == agent_id  # admitted again under its own id
            (entry,) = (await cluster.master_state())["frameworks"]
            assert sorted((t["id"], t["state"]) for t in entry["tasks"]) == [(t, "TASK_RUNNING") for t in launched]
            told = len(framework.statuses)
            await framework.client.reconcile([(t, agent_id) for t in launched])
            await until(lambda: len(framework.statuses) >= told + TASKS, timeout=10, what="reconciliation answers")
            assert {s.state for s in framework.statuses[told:]} == {"TASK_RUNNING"}
            final = running_tasks(cluster.marker)
            assert set(final) == set(launched)  # nothing was killed
            assert_sound(framework.history, final)


async def _forgotten(cluster: PartitionCluster) -> bool:
    state = await cluster.master_state()
    (entry,) = state["frameworks"]
    return bool(state["unreachable_slaves"] == 0 and entry["unreachable_tasks"] == [] and entry["tasks"] == [])


async def test_checklist_b21_count_keeps_the_agent_marked_last_and_a_pruned_one_comes_back(tmp_path: Path) -> None:
    """Checklist B21 (Mesos ``RegistryGcByCount``): two silent fake agents, ``--registry_max_agent_count=1``."""
    async with running_master(
        tmp_path,
        allocation_interval_s=0.1,
        agent_ping_timeout_s=0.2,
        max_agent_ping_timeouts=3,
        registry_gc_interval_s=0.2,
        registry_max_agent_count=1,
    ) as master:
        first = await master.agent("node1")
        scheduler = await master.framework(subscribe_call(framework_info(capabilities=[{"type": "PARTITION_AWARE"}])))
        (offer,) = await scheduler.offers()
        assert (await scheduler.call(accept(offer, command_task("t1", first.agent_id)))).status == 202
        await first.update(scheduler.framework_id, "t1", "TASK_RUNNING")
        await scheduler.wait_update("t1", "TASK_UNREACHABLE", timeout=10)  # fake agents never answer PING
        second = await master.agent("node2")
        await until(lambda: master.registry.state_of(second.agent_id) == "unreachable", timeout=10, what="a mark")
        await until(lambda: master.registry.state_of(first.agent_id) is None, timeout=5, what="the oldest pruned")
        # Only the agent marked last is kept, and the registry and the books agree.
        assert set(master.registry.marked_agents()) == {second.agent_id}
        assert first.agent_id not in master.state.agents and second.agent_id in master.state.agents
        (entry,) = (await master.get_json("/master/state"))["frameworks"]
        assert (entry["tasks"], entry["unreachable_tasks"]) == ([], [])

        await first.reregister([wire_task("t1", scheduler.framework_id, first.agent_id)])
        assert master.registry.state_of(first.agent_id) == "admitted"
        assert master.state.find_task(scheduler.framework_id, "t1") is not None
        assert first.log.of("KILL_TASK") == [] and first.log.of("SHUTDOWN") == []
