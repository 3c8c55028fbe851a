"""Agents in the master core: admission, reconnection, and recovery after a master restart."""

from __future__ import annotations

from test_master_kit import (
    AGENT_RESOURCES,
    Master,
    command_task,
    executor_info,
    framework_info,
    ident,
    offers_in,
    resources_of,
    to_agent,
    updates,
    wire,
)

from butte.core.resources import Resources
from butte.master import agents, frameworks
from butte.master.effects import Allocate, CloseAgentStream
from butte.master.model import AgentLink, FrameworkLink
from butte.wire import mesos
from butte.wire.agent_link import ExecutorRecord, Reregister

AGENT = "cpus:4;mem:4096"


def test_admission_answers_registered_and_offers_the_agent() -> None:
    master = Master(agent_ping_timeout_s=7.0)
    agent_id = master.state.new_agent_id()
    info = mesos.AgentInfo(hostname="node1", resources=wire(AGENT))
    effects = agents.admit(master.state, agent_id, info, "10.0.0.5", "s1", master.now)
    (event,) = to_agent(effects, agent_id, "REGISTERED")
    assert event.registered is not None
    assert event.registered.agent_id.value == agent_id == "M-S0"
    assert event.registered.master_info.id == "M"
    assert event.registered.ping_interval_seconds == 7.0
    assert Allocate() in effects
    agent = master.state.agents[agent_id]
    assert (agent.ip, agent.pid, agent.total, agent.active) == (
        "10.0.0.5",
        "slave(1)@10.0.0.5:5051",
        Resources.parse(AGENT),
        True,
    )
    assert agent.info.id == ident(agent_id)
    assert master.state.new_agent_id() == "M-S1"


def _wire_task(
    task_id: str, framework_id: str, agent_id: str, state: str = "TASK_RUNNING", resources: str = "cpus:1;mem:128"
) -> mesos.Task:
    return mesos.Task(
        name=task_id,
        task_id=ident(task_id),
        framework_id=ident(framework_id),
        agent_id=ident(agent_id),
        state=state,  # type: ignore[arg-type]
        resources=wire(resources),
        statuses=[mesos.TaskStatus(task_id=ident(task_id), state=state, timestamp=1.0)],  # type: ignore[arg-type]
    )


def _reregister(
    agent_id: str,
    wire_tasks: list[mesos.Task],
    infos: list[mesos.FrameworkInfo],
    executors: list[mesos.ExecutorInfo] | None = None,
) -> Reregister:
    return Reregister(
        agent_info=mesos.AgentInfo(hostname="node1", resources=wire(AGENT), id=ident(agent_id)),
        tasks=wire_tasks,
        executors=[ExecutorRecord(executor_info=e) for e in executors or []],
        frameworks=infos,
    )


def test_a_restarted_master_rebuilds_tasks_and_a_recovered_framework_from_the_agent() -> None:
    master = Master(master_id="M2")
    old_framework = "M-0000"
    info = framework_info("old", user="alice", framework_id=old_framework, failover_timeout=60.0)
    executor = executor_info("e1", "cpus:0.5;mem:64")
    executor.framework_id = ident(old_framework)
    call = _reregister(
        "M-S0",
        [_wire_task("t1", old_framework, "M-S0"), _wire_task("done", old_framework, "M-S0", "TASK_FINISHED")],
        [info],
        [executor],
    )
    effects = agents.readmit(master.state, call, "127.0.0.2", "s1", master.now)
    assert [e.type for e in to_agent(effects)] == ["REREGISTERED"]  # nothing is shut down or killed
    framework = master.framework(old_framework)
    assert framework.link is FrameworkLink.RECOVERED
    assert framework.info.user == "alice"
    assert set(framework.tasks) == {"t1", "done"}
    assert framework.tasks["t1"].state == "TASK_RUNNING"
    assert set(framework.executors) == {("M-S0", "e1")}
    # The running task and the executor are held; the finished task is not.
    assert master.available("M-S0") == Resources.parse("cpus:2.5;mem:3904")
    assert offers_in(master.allocate()) == []  # a recovered framework is offered nothing until it resubscribes
    # The framework resubscribes with its id: its tasks are there and it is offered only what is free.
    framework_id, subscribe_effects = master.subscribe(info)
    assert framework_id == old_framework
    assert to_agent(subscribe_effects) == []
    assert master.framework(old_framework).link is FrameworkLink.CONNECTED
    assert master.task(old_framework, "t1").state == "TASK_RUNNING"
    assert resources_of(master.offer(old_framework)) == Resources.parse("cpus:2.5;mem:3904")


def test_a_recovered_framework_unknown_to_the_agent_takes_the_subscribers_info() -> None:
    master = Master(master_id="M2")
    call = _reregister("M-S0", [_wire_task("t1", "M-0000", "M-S0")], [])
    agents.readmit(master.state, call, "127.0.0.2", "s1", master.now)
    master.subscribe(framework_info("web", user="alice", framework_id="M-0000", checkpoint=True))
    info = master.framework("M-0000").info
    assert (info.user, info.name, info.checkpoint) == ("alice", "web", True)


def test_a_recovered_framework_disconnects_and_fails_over_like_any_other() -> None:
    master = Master(master_id="M2")
    info = framework_info(framework_id="M-0000", failover_timeout=10.0)
    agents.readmit(
        master.state, _reregister("M-S0", [_wire_task("t1", "M-0000", "M-S0")], [info]), "ip", "s1", master.now
    )
    master.subscribe(info)
    master.disconnect("M-0000")
    assert frameworks.expire_failovers(master.state, master.now + 9.0) == []
    effects = frameworks.expire_failovers(master.state, master.now + 10.0)
    assert len(to_agent(effects, "M-S0", "SHUTDOWN_FRAMEWORK")) == 1


def _connected(partition_aware: bool) -> tuple[Master, str, str]:
    master = Master()
    agent_id = master.add_agent(AGENT)
    capabilities = ["PARTITION_AWARE"] if partition_aware else []
    framework_id, _ = master.subscribe(framework_info(capabilities=capabilities))
    offer = master.offer(framework_id)
    from test_master_kit import launch_op

    master.accept(
        framework_id,
        [offer.id.value],
        launch_op(command_task("kept", agent_id), command_task("lost", agent_id)),
        refuse_seconds=0,
    )
    return master, framework_id, agent_id


def _break_link(master: Master, agent_id: str) -> None:
    agent = master.state.agents[agent_id]
    agents.disconnect(master.state, agent_id, agent.stream_id, master.now)
    assert agent.link is AgentLink.DISCONNECTED


def test_a_known_agent_reregistering_drops_the_tasks_it_does_not_report() -> None:
    for partition_aware, expected in ((False, "TASK_LOST"), (True, "TASK_DROPPED")):
        master, framework_id, agent_id = _connected(partition_aware)
        _break_link(master, agent_id)
        call = _reregister(
            agent_id, [_wire_task("kept", framework_id, agent_id)], [master.framework(framework_id).info]
        )
        effects = agents.readmit(master.state, call, "127.0.0.2", "new-stream", master.now)
        statuses = updates(effects, framework_id)
        assert [(s.task_id.value, s.state) for s in statuses] == [("lost", expected)]
        assert statuses[0].uuid is None and statuses[0].source == "SOURCE_MASTER"
        assert master.completed(framework_id) == {"lost": expected}
        assert set(master.framework(framework_id).tasks) == {"kept"}
        assert [e.type for e in to_agent(effects, agent_id)] == ["REREGISTERED"]
        agent = master.state.agents[agent_id]
        assert (agent.active, agent.stream_id) == (True, "new-stream")
        # The lost task's resources are free again and the agent is offered once more.
        assert resources_of(master.offer(framework_id)) == Resources.parse("cpus:3;mem:3968")


def test_a_connected_agent_reregistering_replaces_its_old_stream() -> None:
    master = Master()
    agent_id = master.add_agent()
    old = master.state.agents[agent_id].stream_id
    call = _reregister(agent_id, [], [])
    effects = agents.readmit(master.state, call, "127.0.0.2", "fresh", master.now)
    assert CloseAgentStream(agent_id, old) in effects
    assert agents.disconnect(master.state, agent_id, old, master.now) == []  # the old stream ending is harmless
    assert master.state.agents[agent_id].active


def test_tasks_of_a_removed_framework_are_shut_down_on_reregistration() -> None:
    master, framework_id, agent_id = _connected(False)
    frameworks.teardown(master.state, master.framework(framework_id), master.now)
    _break_link(master, agent_id)
    call = _reregister(agent_id, [_wire_task("kept", framework_id, agent_id)], [])
    effects = agents.readmit(master.state, call, "127.0.0.2", "again", master.now)
    (event,) = to_agent(effects, agent_id, "SHUTDOWN_FRAMEWORK")
    assert event.shutdown_framework is not None
    assert event.shutdown_framework.framework_id.value == framework_id


def test_agent_disconnect_keeps_its_tasks_and_stops_offers() -> None:
    master, framework_id, agent_id = _connected(False)
    _break_link(master, agent_id)
    assert set(master.framework(framework_id).tasks) == {"kept", "lost"}
    master.now += 10.0
    assert offers_in(master.allocate()) == []
    _, effects = master.agent_update(agent_id, framework_id, "kept", "TASK_RUNNING")
    assert len(updates(effects)) == 1


def test_a_reconnected_agent_offers_its_free_resources_again() -> None:
    master = Master()
    agent_id = master.add_agent(AGENT_RESOURCES)
    framework_id, _ = master.subscribe()
    master.offer(framework_id)
    _break_link(master, agent_id)
    agents.readmit(master.state, _reregister(agent_id, [], []), "127.0.0.2", "again", master.now)
    assert len(offers_in(master.allocate(), framework_id)) == 1
