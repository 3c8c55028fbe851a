"""ACCEPT: validate offers and operations, launch what is valid, answer the rest with status updates (pure).

A framework's mistake never raises: an invalid offer or task becomes a TASK_DROPPED/TASK_LOST or TASK_ERROR
update with the reason Mesos gives, and unused resources go back to the allocator with the framework's filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from butte.core.errors import ValidationError
from butte.core.resources import Resources
from butte.master import offers
from butte.master.effects import Effect, SendToAgent
from butte.master.model import Agent, Framework, RunningExecutor, Task
from butte.master.state import MasterState, id_of
from butte.master.tasks import master_update
from butte.wire import mesos
from butte.wire.agent_link import AgentEvent, RunTask, RunTaskGroup
from butte.wire.base import encode
from butte.wire.mesos import TaskState
from butte.wire.resources import resources_from_wire
from butte.wire.scheduler import Accept

_MAX_ID_LENGTH = 255


@dataclass(slots=True)
class _Pool:
    """What is left of the accepted offers while operations consume it."""

    agent: Agent
    role: str
    available: Resources


def accept(state: MasterState, framework: Framework, call: Accept, now: float) -> list[Effect]:
    """ACCEPT: launch tasks from the offers; everything invalid becomes a status update.

    Raises:
        ValidationError: the filters are malformed (checked before anything changes).
    """
    seconds = offers.refuse_seconds(call.filters)
    offer_ids = [o.value for o in call.offer_ids]
    problem = _offers_problem(state, framework, offer_ids)
    if problem is not None:
        return _drop_all(state, framework, offer_ids, call, problem, now)
    taken = [offers.take_offer(state, offer_id) for offer_id in offer_ids]
    agent = state.agents[taken[0].agent_id]
    pool = _Pool(agent=agent, role=taken[0].role, available=Resources.sum(o.resources for o in taken))
    effects: list[Effect] = []
    for operation in call.operations:
        effects += _apply_operation(state, framework, pool, operation, now)
    if not pool.available.is_empty():
        state.allocator.recover(framework.id, pool.role, agent.id, pool.available, now, seconds)
    # Like Mesos, recovered resources wait for the next batch allocation: an immediate pass would turn a
    # framework that declines with refuse_seconds=0 into an offer/decline busy loop.
    return effects


def _offers_problem(state: MasterState, framework: Framework, offer_ids: list[str]) -> str | None:
    if not offer_ids:
        return "No offers specified"
    if len(set(offer_ids)) != len(offer_ids):
        return "Duplicate offers specified"
    agent_ids = set()
    roles = set()
    for offer_id in offer_ids:
        offer = state.offers.get(offer_id)
        if offer is None:
            return f"Offer {offer_id} is no longer valid"
        if offer.framework_id != framework.id:
            return f"Offer {offer_id} has invalid framework"
        agent_ids.add(offer.agent_id)
        roles.add(offer.role)
    if len(agent_ids) > 1:
        return "Aggregated offers must belong to one single agent"
    if len(roles) > 1:
        return "Aggregated offers must be allocated to the same role"
    return None


def _drop_all(
    state: MasterState, framework: Framework, offer_ids: list[str], call: Accept, problem: str, now: float
) -> list[Effect]:
    # Mesos takes back the offers that were valid and tells the framework about every task it sent.
    for offer_id in offer_ids:
        offer = state.offers.get(offer_id)
        if offer is not None and offer.framework_id == framework.id:
            offers.take_offer(state, offer_id)
            state.allocator.recover(framework.id, offer.role, offer.agent_id, offer.resources, now)
    state_name: TaskState = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
    effects: list[Effect] = []
    for task in _tasks_in(call.operations):
        status = mesos.TaskStatus(
            task_id=task.task_id,
            state=state_name,
            message=f"Task launched with invalid offers: {problem}",
            reason="REASON_INVALID_OFFERS",
            source="SOURCE_MASTER",
            agent_id=task.agent_id,
            timestamp=now,
        )
        effects += master_update(framework, status)
    return effects


def _tasks_in(operations: list[mesos.OfferOperation]) -> list[mesos.TaskInfo]:
    found: list[mesos.TaskInfo] = []
    for operation in operations:
        if operation.launch is not None:
            found += operation.launch.task_infos
        if operation.launch_group is not None:
            found += operation.launch_group.task_group.tasks
    return found


def _apply_operation(
    state: MasterState, framework: Framework, pool: _Pool, operation: mesos.OfferOperation, now: float
) -> list[Effect]:
    if operation.type == "LAUNCH" and operation.launch is not None:
        effects: list[Effect] = []
        for task in operation.launch.task_infos:
            effects += _launch_one(state, framework, pool, task, now)
        return effects
    if operation.type == "LAUNCH_GROUP" and operation.launch_group is not None:
        return _launch_group(state, framework, pool, operation.launch_group, now)
    # RESERVE, CREATE and the other resource operations are not supported yet: their resources stay unused.
    return []


def _launch_one(
    state: MasterState, framework: Framework, pool: _Pool, info: mesos.TaskInfo, now: float
) -> list[Effect]:
    try:
        needed, executor_new = _validate_task(framework, pool, info)
    except ValidationError as exc:
        return _task_error(framework, info, str(exc), "REASON_TASK_INVALID", now)
    pool.available = pool.available - needed
    task = _record_task(state, framework, pool, info, resources_from_wire(info.resources), executor_new)
    run = RunTask(framework_info=framework.info, task=info)
    return [SendToAgent(task.agent_id, AgentEvent(type="RUN_TASK", run_task=run))]


def _launch_group(
    state: MasterState, framework: Framework, pool: _Pool, group: mesos.LaunchGroup, now: float
) -> list[Effect]:
    tasks = group.task_group.tasks
    try:
        if not tasks:
            raise ValidationError("task_group.tasks", "Task group is empty")
        needed = _validate_group(framework, pool, group)
    except ValidationError as exc:
        effects: list[Effect] = []
        for info in tasks:
            effects += _task_error(framework, info, str(exc), "REASON_TASK_GROUP_INVALID", now)
        return effects
    pool.available = pool.available - needed
    executor_new = (pool.agent.id, group.executor.executor_id.value) not in framework.executors
    for index, info in enumerate(tasks):
        task_resources = resources_from_wire(info.resources)
        info.executor = group.executor
        _record_task(state, framework, pool, info, task_resources, executor_new and index == 0)
        info.executor = None
    run = RunTaskGroup(framework_info=framework.info, executor=group.executor, task_group=group.task_group)
    return [SendToAgent(pool.agent.id, AgentEvent(type="RUN_TASK_GROUP", run_task_group=run))]


def _validate_group(framework: Framework, pool: _Pool, group: mesos.LaunchGroup) -> Resources:
    executor = group.executor
    if executor.type not in (None, "DEFAULT"):
        raise ValidationError("launch_group.executor.type", "Only the DEFAULT executor runs task groups")
    needed = _executor_needs(framework, pool, executor)
    seen: set[str] = set()
    for info in group.task_group.tasks:
        if info.task_id.value in seen:
            raise ValidationError("task_id", f"Task group has duplicate task ID '{info.task_id.value}'")
        seen.add(info.task_id.value)
        if info.executor is not None:
            raise ValidationError("executor", "Task in a task group must not set 'executor'")
        _validate_common(framework, pool, info)
        needed = _add_disjoint(needed, resources_from_wire(info.resources), f"Task '{info.task_id.value}'")
    _require_available(pool, needed, "Task group")
    return needed


def _validate_task(framework: Framework, pool: _Pool, info: mesos.TaskInfo) -> tuple[Resources, bool]:
    _validate_common(framework, pool, info)
    if (info.executor is None) == (info.command is None):
        raise ValidationError(
            "executor", "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        )
    needed = resources_from_wire(info.resources)
    executor_new = False
    if info.executor is not None:
        executor_new = (pool.agent.id, info.executor.executor_id.value) not in framework.executors
        needed = _add_disjoint(needed, _executor_needs(framework, pool, info.executor), "Executor")
    if needed.is_empty():
        raise ValidationError("resources", "Task uses no resources")
    _require_available(pool, needed, "Task")
    return needed, executor_new


def _validate_common(framework: Framework, pool: _Pool, info: mesos.TaskInfo) -> None:
    task_id = info.task_id.value
    if not task_id or len(task_id) > _MAX_ID_LENGTH or task_id in (".", "..") or "/" in task_id or "\0" in task_id:
        raise ValidationError("task_id", f"Task ID '{task_id}' is invalid")
    if task_id in framework.tasks:
        raise ValidationError("task_id", f"Task has duplicate ID: {task_id}")
    if info.agent_id.value != pool.agent.id:
        raise ValidationError("agent_id", f"Task uses invalid agent: {info.agent_id.value}")
    if info.kill_policy and info.kill_policy.grace_period and info.kill_policy.grace_period.nanoseconds < 0:
        raise ValidationError("kill_policy.grace_period", "Task's kill policy must have a non-negative grace period")


def _executor_needs(framework: Framework, pool: _Pool, executor: mesos.ExecutorInfo) -> Resources:
    """The executor's resources when it is new on this agent; nothing when it already runs there.

    Raises:
        ValidationError: the ExecutorInfo differs from the one already running, or names another framework.
    """
    if executor.framework_id is not None and executor.framework_id.value != framework.id:
        raise ValidationError("executor.framework_id", "ExecutorInfo has an invalid FrameworkID")
    running = framework.executors.get((pool.agent.id, executor.executor_id.value))
    if running is not None:
        if _without_framework_id(running.info) != _without_framework_id(executor):
            raise ValidationError("executor", "ExecutorInfo is not compatible with the executor already running")
        return Resources.empty()
    return resources_from_wire(executor.resources)


def _without_framework_id(executor: mesos.ExecutorInfo) -> bytes:
    return encode(msgspec.structs.replace(executor, framework_id=None))


def _add_disjoint(total: Resources, more: Resources, what: str) -> Resources:
    """``total + more``, refusing a port or set item claimed twice (``+`` unites ranges and sets silently,
    so two tasks of a group could hold one port and later free it twice).

    Raises:
        ValidationError: ``more`` shares a range or set item with ``total``.
    """
    combined = total + more
    if not (combined - more).contains(total):
        raise ValidationError("resources", f"{what} uses resources {more} that overlap {total}")
    return combined


def _require_available(pool: _Pool, needed: Resources, what: str) -> None:
    if not pool.available.contains(needed):
        raise ValidationError("resources", f"{what} uses more resources {needed} than available {pool.available}")


def _record_task(
    state: MasterState,
    framework: Framework,
    pool: _Pool,
    info: mesos.TaskInfo,
    task_resources: Resources,
    executor_new: bool,
) -> Task:
    executor = info.executor
    if executor is not None and executor_new:
        executor.framework_id = id_of(framework.id)
        running = RunningExecutor(info=executor, role=pool.role, resources=resources_from_wire(executor.resources))
        framework.executors[(pool.agent.id, executor.executor_id.value)] = running
        pool.agent.executors[(framework.id, executor.executor_id.value)] = running
    task = Task(
        info=info,
        framework_id=framework.id,
        agent_id=pool.agent.id,
        role=pool.role,
        resources=task_resources,
        executor_id=executor.executor_id.value if executor else None,
    )
    framework.tasks[task.id] = task
    pool.agent.tasks[(framework.id, task.id)] = task
    return task


def _task_error(framework: Framework, info: mesos.TaskInfo, message: str, reason: str, now: float) -> list[Effect]:
    status = mesos.TaskStatus(
        task_id=info.task_id,
        state="TASK_ERROR",
        message=message,
        reason=reason,
        source="SOURCE_MASTER",
        agent_id=info.agent_id,
        timestamp=now,
    )
    return master_update(framework, status)
