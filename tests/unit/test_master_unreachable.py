"""Lost agents in the master core: marked unreachable, coming back, marked gone; reconciliation on them."""

from __future__ import annotations

import pytest
from test_master_kit import Master, command_task, framework_info, ident, to_agent, to_framework, updates, wire

from butte.master import agents, frameworks, tasks, unreachable
from butte.master.effects import CloseAgentStream
from butte.master.model import AgentLink
from butte.wire import mesos
from butte.wire.agent_link import Reregister

PA = ("PARTITION_AWARE",)


def _running(
    master: Master, capabilities: tuple[str, ...] = PA, task_ids: tuple[str, ...] = ("t1",)
) -> tuple[str, str]:
    """One agent and one framework with the given tasks RUNNING on it."""
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe(framework_info(capabilities=capabilities))
    master.launch(framework_id, *(command_task(t, agent_id) for t in task_ids))
    for task_id in task_ids:
        master.agent_update(agent_id, framework_id, task_id, "TASK_RUNNING")
    return agent_id, framework_id


def _report(agent_id: str, framework_id: str, *task_states: tuple[str, str]) -> Reregister:
    wire_tasks = [
        mesos.Task(
            name=task_id,
            task_id=ident(task_id),
            framework_id=ident(framework_id),
            agent_id=ident(agent_id),
            state=state,  # type: ignore[arg-type]
            resources=wire("cpus:1;mem:128"),
        )
        for task_id, state in task_states
    ]
    info = mesos.AgentInfo(hostname="node1", port=5051, resources=wire("cpus:4;mem:4096"), id=ident(agent_id))
    return Reregister(agent_info=info, tasks=wire_tasks)


@pytest.mark.parametrize(("capabilities", "told"), [(PA, "TASK_UNREACHABLE"), ((), "TASK_LOST")])
def test_marking_unreachable_tells_each_framework_what_it_may_see(capabilities: tuple[str, ...], told: str) -> None:
    master = Master()
    agent_id, framework_id = _running(master, capabilities)
    master.now += 5
    effects = unreachable.mark_unreachable(master.state, agent_id, master.now)
    (status,) = updates(effects, framework_id)
    assert (status.state, status.reason, status.source, status.uuid) == (
        told,
        "REASON_AGENT_REMOVED",
        "SOURCE_MASTER",
        None,
    )
    assert status.unreachable_time == mesos.TimeInfo(nanoseconds=int(master.now * 1e9))
    (failure,) = to_framework(effects, framework_id, "FAILURE")
    assert failure.failure is not None and failure.failure.agent_id == ident(agent_id)
    agent = master.state.agents[agent_id]
    assert agent.link is AgentLink.UNREACHABLE and not agent.registered
    assert any(isinstance(e, CloseAgentStream) for e in effects)
    assert unreachable.pong_times(master.state) == {}
    assert master.task(framework_id, "t1").state == "TASK_UNREACHABLE"
    # Marking twice does nothing more.
    assert unreachable.mark_unreachable(master.state, agent_id, master.now) == []


def test_an_unreachable_agents_offers_are_rescinded_and_its_resources_leave_the_allocator() -> None:
    master = Master()
    agent_id = master.add_agent()
    framework_id, _ = master.subscribe(framework_info(capabilities=PA))
    offer = master.offer(framework_id)
    effects = unreachable.mark_unreachable(master.state, agent_id, master.now)
    (rescind,) = to_framework(effects, framework_id, "RESCIND")
    assert rescind.rescind is not None and rescind.rescind.offer_id == offer.id
    assert master.state.offers == {}
    assert master.allocate() == []
    assert master.state.allocator.snapshot().agents == 0


@pytest.mark.parametrize(("capabilities", "told"), [(PA, "TASK_UNREACHABLE"), ((), "TASK_LOST")])
def test_reconciliation_on_an_unreachable_agent(capabilities: tuple[str, ...], told: str) -> None:
    master = Master()
    agent_id, framework_id = _running(master, capabilities)
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    framework = master.framework(framework_id)
    asked = [("t1", agent_id), ("never-seen", agent_id)]
    assert [s.state for s in updates(tasks.reconcile(master.state, framework, asked, master.now))] == [told, told]
    assert [s.state for s in updates(tasks.reconcile(master.state, framework, [], master.now))] == [told]


def test_a_partition_aware_task_reports_running_again_when_its_agent_comes_back() -> None:
    master = Master()
    agent_id, framework_id = _running(master, PA, ("t1", "t2", "t3"))
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    master.now += 10
    call = _report(agent_id, framework_id, ("t1", "TASK_RUNNING"), ("t2", "TASK_FINISHED"))
    effects = agents.readmit(master.state, call, "127.0.0.2", "s9", master.now)
    told = {s.task_id.value: (s.state, s.reason) for s in updates(effects, framework_id)}
    assert told == {
        "t1": ("TASK_RUNNING", "REASON_AGENT_REREGISTERED"),
        "t3": ("TASK_GONE", "REASON_AGENT_REREGISTERED"),
    }
    assert to_agent(effects, agent_id, "KILL_TASK") == []
    assert to_agent(effects, agent_id, "REREGISTERED")
    agent = master.state.agents[agent_id]
    assert agent.link is AgentLink.CONNECTED and agent.stream_id == "s9"
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"
    assert master.completed(framework_id) == {"t3": "TASK_GONE"}


def test_a_task_its_framework_was_told_lost_is_killed_when_the_agent_comes_back() -> None:
    master = Master()
    agent_id, framework_id = _running(master, ())
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    call = _report(agent_id, framework_id, ("t1", "TASK_RUNNING"))
    effects = agents.readmit(master.state, call, "127.0.0.2", "s9", master.now)
    (kill,) = to_agent(effects, agent_id, "KILL_TASK")
    assert kill.kill_task is not None and kill.kill_task.task_id == ident("t1")
    assert updates(effects, framework_id) == []

    # The agent retries the RUNNING the framework had not acknowledged before the cut: the master acknowledges
    # it for the framework, which hears nothing of it, then passes on how the kill ended.
    uuid, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    assert updates(effects, framework_id) == []
    (ack,) = to_agent(effects, agent_id, "ACKNOWLEDGE_UPDATE")
    assert ack.acknowledge_update is not None and ack.acknowledge_update.uuid == uuid
    _, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_KILLED")
    assert [s.state for s in updates(effects, framework_id)] == ["TASK_KILLED"]


def test_a_gone_agent_is_told_to_shut_down_and_its_tasks_are_gone_by_operator() -> None:
    master = Master()
    agent_id, framework_id = _running(master, PA)
    stream_id = master.state.agents[agent_id].stream_id
    first = unreachable.shutdown_gone_agent(master.state, agent_id)
    (shutdown,) = to_agent(first, agent_id, "SHUTDOWN")
    assert shutdown.shutdown is not None and shutdown.shutdown.message == unreachable.GONE_MESSAGE
    assert CloseAgentStream(agent_id, stream_id) in first
    effects = unreachable.mark_gone(master.state, agent_id, master.now)
    (status,) = updates(effects, framework_id)
    assert (status.state, status.reason) == ("TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR")
    assert to_framework(effects, framework_id, "FAILURE")
    assert master.completed(framework_id) == {"t1": "TASK_GONE_BY_OPERATOR"}
    assert master.state.agents[agent_id].link is AgentLink.GONE
    asked = [("t1", agent_id)]
    answer = updates(tasks.reconcile(master.state, master.framework(framework_id), asked, master.now))
    assert [s.state for s in answer] == ["TASK_GONE_BY_OPERATOR"]
    assert unreachable.shutdown_gone_agent(master.state, agent_id) == []
    assert unreachable.mark_gone(master.state, agent_id, master.now) == []


def test_an_unreachable_agent_marked_gone_is_not_reported_lost_twice() -> None:
    master = Master()
    agent_id, framework_id = _running(master, ())
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    assert unreachable.shutdown_gone_agent(master.state, agent_id) == []
    effects = unreachable.mark_gone(master.state, agent_id, master.now)
    assert [s.state for s in updates(effects, framework_id)] == ["TASK_LOST"]  # GONE_BY_OPERATOR, as non-aware see it
    assert to_framework(effects, framework_id, "FAILURE") == []
    assert master.framework(framework_id).tasks == {}


def test_a_broken_stream_alone_is_not_unreachability() -> None:
    master = Master()
    agent_id, framework_id = _running(master, PA)
    stream_id = master.state.agents[agent_id].stream_id
    effects = agents.disconnect(master.state, agent_id, stream_id, master.now)
    assert updates(effects, framework_id) == []
    assert unreachable.pong_times(master.state) == {agent_id: master.now}  # still watched: pongs decide
    master.now += 30
    agents.readmit(master.state, _report(agent_id, framework_id, ("t1", "TASK_RUNNING")), "127.0.0.2", "s2", master.now)
    assert unreachable.pong_times(master.state) == {agent_id: master.now}
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"


def test_a_framework_torn_down_while_its_agent_was_unreachable_is_shut_down_there_on_comeback() -> None:
    master = Master()
    agent_id, framework_id = _running(master, PA)
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    frameworks.teardown(master.state, master.framework(framework_id), master.now)
    call = _report(agent_id, framework_id, ("t1", "TASK_RUNNING"))
    effects = agents.readmit(master.state, call, "127.0.0.2", "s9", master.now)
    (shutdown,) = to_agent(effects, agent_id, "SHUTDOWN_FRAMEWORK")
    assert shutdown.shutdown_framework is not None and shutdown.shutdown_framework.framework_id == ident(framework_id)
    assert updates(effects) == []
