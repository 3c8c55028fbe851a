"""Pure builders of scheduler ``Call`` structs, shaped as ``reference/mesos-v1-api.md`` §2.3 lists them."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from butte.wire.base import ID, b64encode
from butte.wire.mesos import (
    DurationInfo,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    KillPolicy,
    Launch,
    LaunchGroup,
    OfferOperation,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)
from butte.wire.scheduler import (
    Accept,
    Acknowledge,
    Call,
    Decline,
    Kill,
    Reconcile,
    ReconcileTask,
    Roles,
    SchedulerMessage,
    Shutdown,
    Subscribe,
    UpdateFramework,
)


def subscribe_call(
    framework_info: FrameworkInfo, framework_id: str | None, suppressed_roles: Sequence[str] = ()
) -> Call:
    """SUBSCRIBE; when resubscribing, the id goes in both ``framework_id`` and ``framework_info.id``."""
    if framework_id is not None:
        framework_info = msgspec.structs.replace(framework_info, id=ID(value=framework_id))
    subscribe = Subscribe(framework_info=framework_info, suppressed_roles=list(suppressed_roles))
    return Call(type="SUBSCRIBE", framework_id=_id(framework_id), subscribe=subscribe)


def teardown_call(framework_id: str) -> Call:
    """TEARDOWN: the master kills every task and forgets the framework."""
    return Call(type="TEARDOWN", framework_id=ID(value=framework_id))


def accept_call(
    framework_id: str,
    offer_ids: Sequence[str],
    operations: Sequence[OfferOperation],
    refuse_seconds: float | None,
) -> Call:
    """ACCEPT; unused offered resources count as declined with the same filter."""
    accept = Accept(
        offer_ids=[ID(value=offer_id) for offer_id in offer_ids],
        operations=list(operations),
        filters=_filters(refuse_seconds),
    )
    return Call(type="ACCEPT", framework_id=ID(value=framework_id), accept=accept)


def launch_operation(tasks: Sequence[TaskInfo]) -> OfferOperation:
    """One LAUNCH operation holding ``tasks``."""
    return OfferOperation(type="LAUNCH", launch=Launch(task_infos=list(tasks)))


def launch_group_operation(executor: ExecutorInfo, tasks: Sequence[TaskInfo]) -> OfferOperation:
    """One LAUNCH_GROUP operation: ``tasks`` run together under ``executor``."""
    group = LaunchGroup(executor=executor, task_group=TaskGroupInfo(tasks=list(tasks)))
    return OfferOperation(type="LAUNCH_GROUP", launch_group=group)


def decline_call(framework_id: str, offer_ids: Sequence[str], refuse_seconds: float | None) -> Call:
    """DECLINE."""
    decline = Decline(offer_ids=[ID(value=offer_id) for offer_id in offer_ids], filters=_filters(refuse_seconds))
    return Call(type="DECLINE", framework_id=ID(value=framework_id), decline=decline)


def revive_call(framework_id: str, roles: Sequence[str] | None) -> Call:
    """REVIVE; without roles no sub-message is sent, which Mesos reads as "all roles"."""
    revive = Roles(roles=list(roles)) if roles else None
    return Call(type="REVIVE", framework_id=ID(value=framework_id), revive=revive)


def suppress_call(framework_id: str, roles: Sequence[str] | None) -> Call:
    """SUPPRESS; without roles, all of the framework's roles."""
    suppress = Roles(roles=list(roles)) if roles else None
    return Call(type="SUPPRESS", framework_id=ID(value=framework_id), suppress=suppress)


def kill_call(framework_id: str, task_id: str, agent_id: str | None, grace_period_s: float | None) -> Call:
    """KILL, with a kill policy only when a grace period is given."""
    policy = None
    if grace_period_s is not None:
        policy = KillPolicy(grace_period=DurationInfo(nanoseconds=round(grace_period_s * 1e9)))
    kill = Kill(task_id=ID(value=task_id), agent_id=_id(agent_id), kill_policy=policy)
    return Call(type="KILL", framework_id=ID(value=framework_id), kill=kill)


def shutdown_call(framework_id: str, executor_id: str, agent_id: str) -> Call:
    """SHUTDOWN of one executor."""
    shutdown = Shutdown(executor_id=ID(value=executor_id), agent_id=ID(value=agent_id))
    return Call(type="SHUTDOWN", framework_id=ID(value=framework_id), shutdown=shutdown)


def acknowledge_call(framework_id: str, status: TaskStatus) -> Call | None:
    """ACKNOWLEDGE of a status update, or None for updates that must not be acknowledged.

    Master-made updates (reconciliation answers, TASK_LOST for unknown tasks) carry no ``uuid``; an
    update without ``agent_id`` cannot be routed back to an agent either.
    """
    if status.uuid is None or status.agent_id is None:
        return None
    acknowledge = Acknowledge(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid)
    return Call(type="ACKNOWLEDGE", framework_id=ID(value=framework_id), acknowledge=acknowledge)


def reconcile_call(framework_id: str, tasks: Sequence[tuple[str, str | None]]) -> Call:
    """RECONCILE; no tasks means implicit reconciliation (the master reports every task it knows)."""
    entries = [ReconcileTask(task_id=ID(value=task), agent_id=_id(agent)) for task, agent in tasks]
    return Call(type="RECONCILE", framework_id=ID(value=framework_id), reconcile=Reconcile(tasks=entries))


def message_call(framework_id: str, agent_id: str, executor_id: str, data: bytes) -> Call:
    """MESSAGE to an executor; the bytes travel base64-encoded."""
    message = SchedulerMessage(agent_id=ID(value=agent_id), executor_id=ID(value=executor_id), data=b64encode(data))
    return Call(type="MESSAGE", framework_id=ID(value=framework_id), message=message)


def update_framework_call(framework_id: str, framework_info: FrameworkInfo, suppressed_roles: Sequence[str]) -> Call:
    """UPDATE_FRAMEWORK; ``framework_info.id`` is filled in because Mesos requires it to match."""
    info = msgspec.structs.replace(framework_info, id=ID(value=framework_id))
    update = UpdateFramework(framework_info=info, suppressed_roles=list(suppressed_roles))
    return Call(type="UPDATE_FRAMEWORK", framework_id=ID(value=framework_id), update_framework=update)


def _filters(refuse_seconds: float | None) -> Filters | None:
    # Leaving filters out lets the master apply its default (5 s), as Mesos clients do.
    return None if refuse_seconds is None else Filters(refuse_seconds=refuse_seconds)


def _id(value: str | None) -> ID | None:
    return None if value is None else ID(value=value)
