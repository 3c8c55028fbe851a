"""Tasks after launch in the master core: updates, acknowledgements, kills, reconciliation, messages."""

from __future__ import annotations

import pytest
from test_master_kit import (
    START,
    Master,
    command_task,
    executor_info,
    executor_task,
    framework_info,
    ident,
    offers_in,
    resources_of,
    to_agent,
    to_framework,
    updates,
)

from butte.core.resources import Resources
from butte.master import tasks
from butte.wire import mesos

AGENT = "cpus:4;mem:4096"


def _running(partition_aware: bool = False, agents: int = 1) -> tuple[Master, str, list[str]]:
    """A framework with task t1 on the first agent (and nothing else offered)."""
    master = Master()
    agent_ids = [master.add_agent(AGENT, hostname=f"node{i}") for i in range(agents)]
    capabilities = ["PARTITION_AWARE"] if partition_aware else []
    framework_id, _ = master.subscribe(framework_info(capabilities=capabilities))
    made = {o.agent_id.value: o for o in offers_in(master.allocate(), framework_id)}
    master.accept(framework_id, [made[agent_ids[0]].id.value], *[_launch("t1", agent_ids[0])])
    for agent_id in agent_ids[1:]:
        master.accept(framework_id, [made[agent_id].id.value], *[_launch(f"t-{agent_id}", agent_id)])
    return master, framework_id, agent_ids


def _launch(task_id: str, agent_id: str) -> mesos.OfferOperation:
    from test_master_kit import launch_op

    return launch_op(command_task(task_id, agent_id))


def test_an_agent_update_reaches_the_framework_with_its_uuid_and_agent_id() -> None:
    master, framework_id, (agent_id,) = _running()
    uuid, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    (status,) = updates(effects, framework_id)
    assert (status.task_id.value, status.state, status.uuid) == ("t1", "TASK_RUNNING", uuid)
    assert status.agent_id is not None and status.agent_id.value == agent_id
    task = master.task(framework_id, "t1")
    assert (task.state, task.unacked_uuid) == ("TASK_RUNNING", uuid)
    assert [s.state for s in task.statuses] == ["TASK_RUNNING"]


def test_a_terminal_update_frees_the_tasks_resources() -> None:
    master, framework_id, (agent_id,) = _running()
    master.now = START + 5.0  # past the default filter on the unused part of the offer
    assert resources_of(master.offer(framework_id)) == Resources.parse("cpus:3;mem:3968")
    master.agent_update(agent_id, framework_id, "t1", "TASK_FINISHED")
    assert resources_of(master.offer(framework_id)) == Resources.parse("cpus:1;mem:128")
    # The task stays active until the framework acknowledges the terminal update.
    assert master.task(framework_id, "t1").state == "TASK_FINISHED"


def test_a_repeated_terminal_update_frees_nothing_twice() -> None:
    master, framework_id, (agent_id,) = _running()
    uuid, _ = master.agent_update(agent_id, framework_id, "t1", "TASK_FAILED")
    free = master.available(agent_id)
    _, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_FAILED", uuid=uuid)
    assert master.available(agent_id) == free
    assert len(updates(effects)) == 1  # the retry still reaches the framework
    assert [s.state for s in master.task(framework_id, "t1").statuses] == ["TASK_FAILED"]


def test_an_update_after_a_terminal_one_does_not_revive_the_task() -> None:
    master, framework_id, (agent_id,) = _running()
    master.agent_update(agent_id, framework_id, "t1", "TASK_FINISHED")
    master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    task = master.task(framework_id, "t1")
    # Mesos: once terminal, later updates do not change the task's state (its resources are gone).
    assert task.state == "TASK_FINISHED"
    assert task.resources_released


def test_acknowledge_is_relayed_to_the_agent() -> None:
    master, framework_id, (agent_id,) = _running()
    uuid, _ = master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    effects = master.ack(framework_id, agent_id, "t1", uuid)
    (event,) = to_agent(effects, agent_id, "ACKNOWLEDGE_UPDATE")
    ack = event.acknowledge_update
    assert ack is not None
    assert (ack.framework_id.value, ack.task_id.value, ack.uuid) == (framework_id, "t1", uuid)
    task = master.task(framework_id, "t1")
    assert (task.state, task.unacked_uuid) == ("TASK_RUNNING", None)


def test_a_terminal_update_once_acknowledged_moves_the_task_to_completed() -> None:
    master, framework_id, (agent_id,) = _running()
    uuid, _ = master.agent_update(agent_id, framework_id, "t1", "TASK_KILLED")
    master.ack(framework_id, agent_id, "t1", uuid)
    assert master.state.find_task(framework_id, "t1") is None
    assert master.completed(framework_id) == {"t1": "TASK_KILLED"}
    assert master.state.agents[agent_id].tasks == {}


def test_an_acknowledgement_with_another_uuid_keeps_the_task() -> None:
    master, framework_id, (agent_id,) = _running()
    master.agent_update(agent_id, framework_id, "t1", "TASK_FINISHED")
    master.ack(framework_id, agent_id, "t1", master.new_uuid())
    assert master.task(framework_id, "t1").state == "TASK_FINISHED"


@pytest.mark.parametrize(
    "state", ["TASK_UNREACHABLE", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"]
)
def test_partition_states_reach_plain_frameworks_as_task_lost(state: str) -> None:
    master, framework_id, (agent_id,) = _running(partition_aware=False)
    _, effects = master.agent_update(agent_id, framework_id, "t1", state)
    assert [s.state for s in updates(effects)] == ["TASK_LOST"]


def test_partition_aware_frameworks_see_the_real_state() -> None:
    master, framework_id, (agent_id,) = _running(partition_aware=True)
    _, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_GONE")
    assert [s.state for s in updates(effects)] == ["TASK_GONE"]


def test_updates_for_a_disconnected_framework_are_recorded_not_sent() -> None:
    master, framework_id, (agent_id,) = _running()
    master.framework(framework_id).info.failover_timeout = 60.0
    master.disconnect(framework_id)
    _, effects = master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    assert to_framework(effects) == []
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"


def test_kill_goes_to_the_agent_running_the_task() -> None:
    master, framework_id, agent_ids = _running(agents=2)
    other = agent_ids[1]
    policy = mesos.KillPolicy(grace_period=mesos.DurationInfo(nanoseconds=10**9))
    effects = tasks.kill(master.state, master.framework(framework_id), f"t-{other}", policy, master.now)
    assert to_agent(effects, agent_ids[0]) == []
    (event,) = to_agent(effects, other, "KILL_TASK")
    assert event.kill_task is not None
    assert event.kill_task.task_id.value == f"t-{other}"
    assert event.kill_task.framework_id.value == framework_id
    assert event.kill_task.kill_policy == policy


@pytest.mark.parametrize(("partition_aware", "state"), [(False, "TASK_LOST"), (True, "TASK_UNKNOWN")])
def test_kill_of_an_unknown_task_is_answered_like_reconciliation(partition_aware: bool, state: str) -> None:
    master, framework_id, _ = _running(partition_aware)
    effects = tasks.kill(master.state, master.framework(framework_id), "ghost", None, master.now)
    assert to_agent(effects) == []
    (status,) = updates(effects, framework_id)
    assert (status.task_id.value, status.state, status.reason) == ("ghost", state, "REASON_RECONCILIATION")
    assert status.uuid is None


def test_explicit_reconciliation_of_a_known_task_gives_its_latest_state() -> None:
    master, framework_id, (agent_id,) = _running()
    master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    master.now = START + 7.0
    effects = tasks.reconcile(master.state, master.framework(framework_id), [("t1", None)], master.now)
    (status,) = updates(effects, framework_id)
    assert (status.state, status.reason, status.source, status.uuid) == (
        "TASK_RUNNING",
        "REASON_RECONCILIATION",
        "SOURCE_MASTER",
        None,
    )
    assert status.agent_id is not None and status.agent_id.value == agent_id
    assert status.timestamp == START + 7.0


def test_a_staging_task_reconciles_as_staging() -> None:
    master, framework_id, _ = _running()
    effects = tasks.reconcile(master.state, master.framework(framework_id), [("t1", None)], master.now)
    assert [s.state for s in updates(effects)] == ["TASK_STAGING"]


@pytest.mark.parametrize(
    ("partition_aware", "on_known_agent", "state"),
    [
        (False, True, "TASK_LOST"),
        (False, False, "TASK_LOST"),
        (True, True, "TASK_GONE"),
        (True, False, "TASK_UNKNOWN"),
    ],
)
def test_explicit_reconciliation_of_an_unknown_task(partition_aware: bool, on_known_agent: bool, state: str) -> None:
    master, framework_id, (agent_id,) = _running(partition_aware)
    asked: list[tuple[str, str | None]] = [("ghost", agent_id if on_known_agent else "M-S77")]
    (status,) = updates(tasks.reconcile(master.state, master.framework(framework_id), asked, master.now))
    assert (status.task_id.value, status.state, status.reason) == ("ghost", state, "REASON_RECONCILIATION")
    assert status.uuid is None


def test_unknown_task_messages_match_mesos() -> None:
    # Marathon reads "Reconciliation: Task is unknown to the" as "the agent is registered and the task is gone".
    master, framework_id, (agent_id,) = _running(partition_aware=True)
    framework = master.framework(framework_id)
    (gone,) = updates(tasks.reconcile(master.state, framework, [("ghost", agent_id)], master.now))
    (unknown,) = updates(tasks.reconcile(master.state, framework, [("ghost", None)], master.now))
    assert gone.message == "Reconciliation: Task is unknown to the agent"
    assert unknown.message == "Reconciliation: Task is unknown"


def test_implicit_reconciliation_reports_every_task() -> None:
    master, framework_id, agent_ids = _running(agents=3)
    master.agent_update(agent_ids[0], framework_id, "t1", "TASK_RUNNING")
    statuses = updates(tasks.reconcile(master.state, master.framework(framework_id), [], master.now))
    assert sorted((s.task_id.value, s.state) for s in statuses) == sorted(
        [("t1", "TASK_RUNNING")] + [(f"t-{a}", "TASK_STAGING") for a in agent_ids[1:]]
    )
    assert all(s.uuid is None and s.reason == "REASON_RECONCILIATION" for s in statuses)


def test_scheduler_message_is_relayed_to_the_agent() -> None:
    master, framework_id, (agent_id,) = _running()
    effects = tasks.framework_message(master.framework(framework_id), agent_id, "e1", "aGVsbG8=")
    (event,) = to_agent(effects, agent_id, "FRAMEWORK_MESSAGE")
    assert event.framework_message is not None
    assert (event.framework_message.executor_id.value, event.framework_message.data) == ("e1", "aGVsbG8=")


def test_executor_message_reaches_the_framework() -> None:
    master, framework_id, (agent_id,) = _running()
    effects = tasks.executor_message(master.state, agent_id, framework_id, "e1", "aGk=")
    (event,) = to_framework(effects, framework_id, "MESSAGE")
    assert event.message is not None
    assert (event.message.agent_id.value, event.message.executor_id.value, event.message.data) == (
        agent_id,
        "e1",
        "aGk=",
    )
    assert tasks.executor_message(master.state, agent_id, "M-9999", "e1", "aGk=") == []


def test_executor_exit_is_a_failure_event_and_frees_the_executor() -> None:
    master = Master()
    agent_id = master.add_agent(AGENT)
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    from test_master_kit import launch_op

    executor = executor_info("e1", "cpus:0.5;mem:64")
    master.accept(framework_id, [offer.id.value], launch_op(executor_task("t1", agent_id, executor)), refuse_seconds=0)
    assert master.available(agent_id) == Resources.parse("cpus:2.5;mem:3904")
    effects = tasks.executor_exited(master.state, agent_id, framework_id, "e1", 9)
    (event,) = to_framework(effects, framework_id, "FAILURE")
    assert event.failure is not None
    assert (event.failure.agent_id, event.failure.executor_id, event.failure.status) == (
        ident(agent_id),
        ident("e1"),
        9,
    )
    assert master.framework(framework_id).executors == {}
    assert master.state.agents[agent_id].executors == {}
    assert master.available(agent_id) == Resources.parse("cpus:3;mem:3968")


def test_shutdown_executor_goes_to_the_agent() -> None:
    master, framework_id, (agent_id,) = _running()
    (event,) = to_agent(tasks.shutdown_executor(master.framework(framework_id), agent_id, "e1"))
    assert event.type == "SHUTDOWN_EXECUTOR" and event.shutdown_executor is not None
    assert event.shutdown_executor.executor_id.value == "e1"


def test_kill_of_an_unknown_task_on_a_named_agent_reconciles_with_that_agent() -> None:
    master, framework_id, (agent_id,) = _running(partition_aware=True)
    effects = tasks.kill(master.state, master.framework(framework_id), "ghost", None, master.now, agent_id)
    (status,) = updates(effects, framework_id)
    assert (status.state, status.agent_id) == ("TASK_GONE", ident(agent_id))
