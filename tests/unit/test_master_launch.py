"""ACCEPT in the master core: offer validation, task validation, LAUNCH and LAUNCH_GROUP, leftovers."""

from __future__ import annotations

import pytest
from test_master_kit import (
    START,
    Master,
    command_task,
    executor_info,
    executor_task,
    framework_info,
    group_task,
    ident,
    launch_group_op,
    launch_op,
    offers_in,
    resources_of,
    to_agent,
    updates,
)

from butte.core.errors import ValidationError
from butte.core.resources import Resources
from butte.master import offers
from butte.master.effects import Effect
from butte.wire import mesos

AGENT = "cpus:4;mem:4096"


def _setup(partition_aware: bool = False, agents: int = 1) -> tuple[Master, str, list[str]]:
    master = Master()
    agent_ids = [master.add_agent(AGENT, hostname=f"node{i}") for i in range(agents)]
    capabilities = ["PARTITION_AWARE"] if partition_aware else []
    framework_id, _ = master.subscribe(framework_info(capabilities=capabilities))
    return master, framework_id, agent_ids


def test_a_valid_task_is_sent_to_its_agent_and_is_staging() -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.launch(framework_id, command_task("t1", agent_id))
    runs = to_agent(effects, agent_id, "RUN_TASK")
    assert len(runs) == 1 and runs[0].run_task is not None
    assert runs[0].run_task.task.task_id.value == "t1"
    assert runs[0].run_task.framework_info.id is not None
    assert runs[0].run_task.framework_info.id.value == framework_id
    assert updates(effects) == []
    task = master.task(framework_id, "t1")
    assert (task.state, task.agent_id, task.role) == ("TASK_STAGING", agent_id, "*")
    assert task.resources == Resources.parse("cpus:1;mem:128")
    assert master.state.agents[agent_id].tasks[(framework_id, "t1")] is task
    assert master.state.offers == {}


def test_unused_resources_go_back_with_the_accept_filter() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    master.accept(framework_id, [offer.id.value], launch_op(command_task("t1", agent_id)), refuse_seconds=10.0)
    assert master.available(agent_id) == Resources.parse("cpus:3;mem:3968")
    master.now = START + 9.0
    assert offers_in(master.allocate()) == []
    master.now = START + 10.0
    assert resources_of(master.offer(framework_id)) == Resources.parse("cpus:3;mem:3968")


@pytest.mark.parametrize(("partition_aware", "state"), [(False, "TASK_LOST"), (True, "TASK_DROPPED")])
def test_unknown_offer_drops_every_task(partition_aware: bool, state: str) -> None:
    master, framework_id, (agent_id,) = _setup(partition_aware)
    effects = master.accept(
        framework_id, ["M-O42"], launch_op(command_task("t1", agent_id), command_task("t2", agent_id))
    )
    statuses = updates(effects, framework_id)
    assert [(s.task_id.value, s.state, s.reason) for s in statuses] == [
        ("t1", state, "REASON_INVALID_OFFERS"),
        ("t2", state, "REASON_INVALID_OFFERS"),
    ]
    assert all(s.uuid is None and s.source == "SOURCE_MASTER" for s in statuses)
    assert to_agent(effects) == []
    assert master.framework(framework_id).tasks == {}


def test_a_used_offer_cannot_be_used_again() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    master.accept(framework_id, [offer.id.value], launch_op(command_task("t1", agent_id)))
    effects = master.accept(framework_id, [offer.id.value], launch_op(command_task("t2", agent_id)))
    assert [(s.task_id.value, s.state) for s in updates(effects)] == [("t2", "TASK_LOST")]
    assert to_agent(effects) == []


def test_a_rescinded_offer_is_invalid() -> None:
    master = Master(offer_timeout_s=1.0)
    agent_id = master.add_agent(AGENT)
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    offers.expire_offers(master.state, START + 1.0)
    effects = master.accept(framework_id, [offer.id.value], launch_op(command_task("t1", agent_id)))
    assert [s.reason for s in updates(effects)] == ["REASON_INVALID_OFFERS"]


def test_an_offer_of_another_framework_is_invalid_and_stays_with_its_owner() -> None:
    master, owner, (agent_id,) = _setup()
    offer = master.offer(owner)
    thief, _ = master.subscribe(framework_info("thief"))
    effects = master.accept(thief, [offer.id.value], launch_op(command_task("t1", agent_id)))
    assert [(s.state, s.reason) for s in updates(effects, thief)] == [("TASK_LOST", "REASON_INVALID_OFFERS")]
    assert offer.id.value in master.state.offers
    assert master.state.offers[offer.id.value].framework_id == owner


def test_offers_on_two_agents_cannot_be_combined_and_are_taken_back() -> None:
    master, framework_id, agent_ids = _setup(agents=2)
    made = offers_in(master.allocate(), framework_id)
    effects = master.accept(framework_id, [o.id.value for o in made], launch_op(command_task("t1", agent_ids[0])))
    statuses = updates(effects)
    assert [s.reason for s in statuses] == ["REASON_INVALID_OFFERS"]
    assert statuses[0].message is not None and "single agent" in statuses[0].message
    assert master.state.offers == {}
    # Taken back without a filter: both agents are offered again.
    assert len(offers_in(master.allocate(), framework_id)) == 2


def test_two_offers_on_one_agent_can_be_combined() -> None:
    master, framework_id, (agent_id,) = _setup()
    first = master.offer(framework_id)
    master.accept(
        framework_id, [first.id.value], launch_op(command_task("t1", agent_id, "cpus:2;mem:1024")), refuse_seconds=0
    )
    rest = master.offer(framework_id)
    _, _ = master.agent_update(agent_id, framework_id, "t1", "TASK_FINISHED")
    freed = master.offer(framework_id)
    assert resources_of(rest) + resources_of(freed) == Resources.parse(AGENT)
    effects = master.accept(
        framework_id, [rest.id.value, freed.id.value], launch_op(command_task("big", agent_id, "cpus:4;mem:4096"))
    )
    assert len(to_agent(effects, agent_id, "RUN_TASK")) == 1
    assert master.available(agent_id).is_empty()


def test_duplicate_offer_ids_are_invalid() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    effects = master.accept(framework_id, [offer.id.value, offer.id.value], launch_op(command_task("t1", agent_id)))
    assert [s.reason for s in updates(effects)] == ["REASON_INVALID_OFFERS"]


def test_no_offer_ids_is_invalid() -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.accept(framework_id, [], launch_op(command_task("t1", agent_id)))
    assert [s.state for s in updates(effects)] == ["TASK_LOST"]


def _task_errors(effects: list[Effect]) -> list[tuple[str, str, str | None]]:
    return [(s.task_id.value, s.state, s.reason) for s in updates(effects)]


def test_a_task_using_more_than_offered_errors_and_frees_the_offer() -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.launch(framework_id, command_task("t1", agent_id, "cpus:5;mem:128"))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]
    assert to_agent(effects) == []
    assert master.framework(framework_id).tasks == {}
    assert master.available(agent_id) == Resources.parse(AGENT)


def test_tasks_share_an_offer_until_it_runs_out() -> None:
    master, framework_id, (agent_id,) = _setup()
    infos = [command_task(f"t{i}", agent_id, "cpus:1.5;mem:100") for i in range(3)]
    effects = master.launch(framework_id, *infos)
    assert len(to_agent(effects, agent_id, "RUN_TASK")) == 2
    assert _task_errors(effects) == [("t2", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_a_task_using_a_port_outside_the_offer_errors() -> None:
    master = Master()
    agent_id = master.add_agent("cpus:4;mem:4096;ports:[31000-31010]")
    framework_id, _ = master.subscribe()
    effects = master.launch(framework_id, command_task("t1", agent_id, "cpus:1;mem:128;ports:[80-80]"))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_duplicate_task_ids_in_one_call_error_the_second() -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.launch(framework_id, command_task("t1", agent_id), command_task("t1", agent_id))
    assert len(to_agent(effects, agent_id, "RUN_TASK")) == 1
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]
    assert master.task(framework_id, "t1").state == "TASK_STAGING"


def test_duplicate_task_id_across_calls_errors_while_the_first_is_active() -> None:
    master, framework_id, (agent_id,) = _setup()
    master.accept(
        framework_id, [master.offer(framework_id).id.value], launch_op(command_task("t1", agent_id)), refuse_seconds=0
    )
    effects = master.launch(framework_id, command_task("t1", agent_id))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]
    # The error is about the duplicate; the running task is left alone.
    assert master.task(framework_id, "t1").state == "TASK_STAGING"
    assert master.task(framework_id, "t1").resources_released is False


@pytest.mark.parametrize("which", ["both", "neither"])
def test_a_task_needs_exactly_one_of_command_and_executor(which: str) -> None:
    master, framework_id, (agent_id,) = _setup()
    info = command_task("t1", agent_id, command="true" if which == "both" else None)
    if which == "both":
        info.executor = executor_info("e1")
    effects = master.launch(framework_id, info)
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]
    assert to_agent(effects) == []


def test_a_task_for_another_agent_than_the_offers_errors() -> None:
    master, framework_id, _ = _setup()
    effects = master.launch(framework_id, command_task("t1", "M-S99"))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


@pytest.mark.parametrize("task_id", ["", ".", "..", "a/b", "x" * 256])
def test_invalid_task_ids_error(task_id: str) -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.launch(framework_id, command_task(task_id, agent_id))
    assert [s.state for s in updates(effects)] == ["TASK_ERROR"]


def test_a_task_without_resources_errors() -> None:
    master, framework_id, (agent_id,) = _setup()
    effects = master.launch(framework_id, command_task("t1", agent_id, ""))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_a_task_with_a_malformed_resource_errors() -> None:
    master, framework_id, (agent_id,) = _setup()
    info = command_task("t1", agent_id)
    info.resources = [mesos.Resource(name="cpus", type="SCALAR")]
    effects = master.launch(framework_id, info)
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_executor_resources_are_counted_once_per_framework_agent_and_executor() -> None:
    master, framework_id, (agent_id,) = _setup()
    executor = executor_info("e1", "cpus:0.5;mem:64")
    offer = master.offer(framework_id)
    effects = master.accept(
        framework_id,
        [offer.id.value],
        launch_op(
            executor_task("t1", agent_id, executor, "cpus:1;mem:128"),
            executor_task("t2", agent_id, executor_info("e1", "cpus:0.5;mem:64"), "cpus:1;mem:128"),
        ),
        refuse_seconds=0,
    )
    assert len(to_agent(effects, agent_id, "RUN_TASK")) == 2
    assert master.available(agent_id) == Resources.parse("cpus:1.5;mem:3776")
    # A later launch on the same executor pays only for the task.
    more = master.launch(
        framework_id, executor_task("t3", agent_id, executor_info("e1", "cpus:0.5;mem:64"), "cpus:1;mem:128")
    )
    assert len(to_agent(more, agent_id, "RUN_TASK")) == 1
    assert master.task(framework_id, "t3").executor_id == "e1"
    assert len(master.framework(framework_id).executors) == 1


def test_a_running_executor_must_keep_its_info() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    master.accept(
        framework_id, [offer.id.value], launch_op(executor_task("t1", agent_id, executor_info("e1"))), refuse_seconds=0
    )
    changed = executor_info("e1", "cpus:1;mem:64")
    effects = master.launch(framework_id, executor_task("t2", agent_id, changed))
    assert _task_errors(effects) == [("t2", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_an_executor_of_another_framework_is_refused() -> None:
    master, framework_id, (agent_id,) = _setup()
    executor = executor_info("e1")
    executor.framework_id = ident("M-9999")
    effects = master.launch(framework_id, executor_task("t1", agent_id, executor))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_launch_group_sends_one_run_task_group_and_records_every_task() -> None:
    master, framework_id, (agent_id,) = _setup()
    executor = executor_info("default", "cpus:0.1;mem:32", kind="DEFAULT")
    offer = master.offer(framework_id)
    effects = master.accept(
        framework_id,
        [offer.id.value],
        launch_group_op(executor, group_task("g1", agent_id), group_task("g2", agent_id)),
        refuse_seconds=0,
    )
    groups = to_agent(effects, agent_id, "RUN_TASK_GROUP")
    assert len(groups) == 1 and groups[0].run_task_group is not None
    run = groups[0].run_task_group
    assert run.executor.executor_id.value == "default"
    assert [t.task_id.value for t in run.task_group.tasks] == ["g1", "g2"]
    assert to_agent(effects, agent_id, "RUN_TASK") == []
    for task_id in ("g1", "g2"):
        task = master.task(framework_id, task_id)
        assert (task.state, task.executor_id) == ("TASK_STAGING", "default")
    assert master.available(agent_id) == Resources.parse("cpus:1.9;mem:3808")


def _invalid_groups(agent_id: str) -> list[mesos.OfferOperation]:
    default = executor_info("default", "cpus:0.1;mem:32", kind="DEFAULT")
    with_executor = group_task("g2", agent_id)
    with_executor.executor = executor_info("x")
    return [
        launch_group_op(default, group_task("g1", agent_id), group_task("g2", agent_id, "cpus:9;mem:1")),
        launch_group_op(default, group_task("g1", agent_id), group_task("g1", agent_id)),
        launch_group_op(default, group_task("g1", agent_id), with_executor),
        launch_group_op(executor_info("custom", kind="CUSTOM"), group_task("g1", agent_id), group_task("g2", agent_id)),
        launch_group_op(default, group_task("g1", agent_id), group_task("g2", "M-S42")),
    ]


@pytest.mark.parametrize("index", range(5))
def test_an_invalid_task_group_errors_every_task(index: int) -> None:
    master, framework_id, (agent_id,) = _setup()
    operation = _invalid_groups(agent_id)[index]
    offer = master.offer(framework_id)
    effects = master.accept(framework_id, [offer.id.value], operation)
    assert operation.launch_group is not None
    assert [(s.task_id.value, s.state, s.reason) for s in updates(effects)] == [
        (t.task_id.value, "TASK_ERROR", "REASON_TASK_GROUP_INVALID") for t in operation.launch_group.task_group.tasks
    ]
    assert to_agent(effects) == []
    assert master.framework(framework_id).tasks == {}
    assert master.framework(framework_id).executors == {}
    assert master.available(agent_id) == Resources.parse(AGENT)


def test_unsupported_operations_leave_their_resources_unused() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    reserve = mesos.OfferOperation(type="RESERVE")
    effects = master.accept(framework_id, [offer.id.value], reserve, launch_op(command_task("t1", agent_id)))
    assert len(to_agent(effects, agent_id, "RUN_TASK")) == 1
    assert master.available(agent_id) == Resources.parse("cpus:3;mem:3968")


def test_tasks_of_a_group_may_not_share_a_port() -> None:
    master = Master()
    agent_id = master.add_agent("cpus:4;mem:1024;ports:[31000-31009]")
    framework_id, _ = master.subscribe()
    offer = master.offer(framework_id)
    operation = launch_group_op(
        executor_info("default", "cpus:0.1;mem:32", kind="DEFAULT"),
        group_task("g1", agent_id, "cpus:1;mem:10;ports:[31000-31004]"),
        group_task("g2", agent_id, "cpus:1;mem:10;ports:[31003-31003]"),
    )
    effects = master.accept(framework_id, [offer.id.value], operation)
    assert [(s.state, s.reason) for s in updates(effects)] == [("TASK_ERROR", "REASON_TASK_GROUP_INVALID")] * 2
    assert master.available(agent_id) == Resources.parse("cpus:4;mem:1024;ports:[31000-31009]")


def test_a_task_may_not_share_a_port_with_its_new_executor() -> None:
    master = Master()
    agent_id = master.add_agent("cpus:4;mem:1024;ports:[31000-31009]")
    framework_id, _ = master.subscribe()
    executor = executor_info("e1", "cpus:0.1;mem:32;ports:[31000-31000]")
    effects = master.launch(framework_id, executor_task("t1", agent_id, executor, "cpus:1;mem:10;ports:[31000-31001]"))
    assert _task_errors(effects) == [("t1", "TASK_ERROR", "REASON_TASK_INVALID")]


def test_malformed_filters_are_refused_before_anything_changes() -> None:
    master, framework_id, (agent_id,) = _setup()
    offer = master.offer(framework_id)
    with pytest.raises(ValidationError):
        master.accept(
            framework_id, [offer.id.value], launch_op(command_task("t1", agent_id)), refuse_seconds=float("nan")
        )
    assert offer.id.value in master.state.offers
    assert master.framework(framework_id).tasks == {}
