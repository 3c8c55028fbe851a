"""mesos.v1.scheduler Call and Event (``scheduler.proto``); see ``reference/mesos-v1-api.md`` §2."""

from __future__ import annotations

from typing import Literal

import msgspec

from butte.core.errors import ValidationError
from butte.wire.base import ID, NO_RAW, Message, check_uuid, require_submessage
from butte.wire.mesos import (
    Filters,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    Offer,
    OfferOperation,
    TaskStatus,
)

CallType = Literal[
    "UNKNOWN",
    "SUBSCRIBE",
    "TEARDOWN",
    "ACCEPT",
    "DECLINE",
    "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS",
    "REVIVE",
    "KILL",
    "SHUTDOWN",
    "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS",
    "RECONCILE",
    "RECONCILE_OPERATIONS",
    "MESSAGE",
    "REQUEST",
    "SUPPRESS",
    "UPDATE_FRAMEWORK",
]


class Subscribe(Message):
    framework_info: FrameworkInfo
    suppressed_roles: list[str] = []
    offer_constraints: msgspec.Raw = NO_RAW


class Accept(Message):
    offer_ids: list[ID] = []
    operations: list[OfferOperation] = []
    filters: Filters | None = None


class Decline(Message):
    offer_ids: list[ID] = []
    filters: Filters | None = None


class InverseOffers(Message):
    inverse_offer_ids: list[ID] = []
    filters: Filters | None = None


class Roles(Message):
    roles: list[str] = []


class Kill(Message):
    task_id: ID
    agent_id: ID | None = None
    kill_policy: KillPolicy | None = None


class Shutdown(Message):
    executor_id: ID
    agent_id: ID


class Acknowledge(Message):
    agent_id: ID
    task_id: ID
    uuid: str


class AcknowledgeOperationStatus(Message):
    agent_id: ID | None = None
    resource_provider_id: ID | None = None
    uuid: msgspec.Raw = NO_RAW
    operation_id: ID | None = None


class ReconcileTask(Message):
    task_id: ID
    agent_id: ID | None = None


class Reconcile(Message):
    tasks: list[ReconcileTask] = []


class ReconcileOperations(Message):
    operations: msgspec.Raw = NO_RAW


class SchedulerMessage(Message):
    agent_id: ID
    executor_id: ID
    data: str


class Request(Message):
    requests: msgspec.Raw = NO_RAW


class UpdateFramework(Message):
    framework_info: FrameworkInfo
    suppressed_roles: list[str] = []
    offer_constraints: msgspec.Raw = NO_RAW


class Call(Message):
    type: CallType | None = None
    framework_id: ID | None = None
    subscribe: Subscribe | None = None
    accept: Accept | None = None
    decline: Decline | None = None
    accept_inverse_offers: InverseOffers | None = None
    decline_inverse_offers: InverseOffers | None = None
    revive: Roles | None = None
    suppress: Roles | None = None
    kill: Kill | None = None
    shutdown: Shutdown | None = None
    acknowledge: Acknowledge | None = None
    acknowledge_operation_status: AcknowledgeOperationStatus | None = None
    reconcile: Reconcile | None = None
    reconcile_operations: ReconcileOperations | None = None
    message: SchedulerMessage | None = None
    request: Request | None = None
    update_framework: UpdateFramework | None = None


# Calls whose sub-message Mesos requires ("Expecting 'accept' to be present").
_REQUIRED_SUBMESSAGE: dict[str, str] = {
    "SUBSCRIBE": "subscribe",
    "ACCEPT": "accept",
    "DECLINE": "decline",
    "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers",
    "KILL": "kill",
    "SHUTDOWN": "shutdown",
    "ACKNOWLEDGE": "acknowledge",
    "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status",
    "RECONCILE": "reconcile",
    "RECONCILE_OPERATIONS": "reconcile_operations",
    "MESSAGE": "message",
    "REQUEST": "request",
    "UPDATE_FRAMEWORK": "update_framework",
}


def validate_call(call: Call) -> None:
    """The checks Mesos makes before it looks at the framework (``validation::scheduler::call``).

    Raises:
        ValidationError: the call is incomplete or inconsistent; names the field.
    """
    if call.type is None:
        raise ValidationError("type", "Expecting 'type' to be present")
    require_submessage(call, call.type, _REQUIRED_SUBMESSAGE)
    if call.type == "SUBSCRIBE":
        assert call.subscribe is not None
        _validate_subscribe_ids(call.framework_id, call.subscribe.framework_info.id)
        return
    if call.framework_id is None:
        raise ValidationError("framework_id", "Expecting 'framework_id' to be present")
    if call.type == "ACKNOWLEDGE":
        assert call.acknowledge is not None
        check_uuid(call.acknowledge.uuid, "acknowledge.uuid")
    if call.type == "UPDATE_FRAMEWORK":
        assert call.update_framework is not None
        if call.update_framework.framework_info.id != call.framework_id:
            raise ValidationError(
                "update_framework.framework_info.id", "'framework_id' differs from 'framework_info.id'"
            )


def _validate_subscribe_ids(call_id: ID | None, info_id: ID | None) -> None:
    if call_id != info_id:
        raise ValidationError(
            "subscribe.framework_info.id", "'framework_id' differs from 'subscribe.framework_info.id'"
        )


# ---- events ----


class Subscribed(Message):
    framework_id: ID
    heartbeat_interval_seconds: float | None = None
    master_info: MasterInfo | None = None


class OffersEvent(Message):
    offers: list[Offer] = []
    inverse_offers: msgspec.Raw = NO_RAW


class Rescind(Message):
    offer_id: ID


class Update(Message):
    status: TaskStatus


class MessageEvent(Message):
    agent_id: ID
    executor_id: ID
    data: str


class Failure(Message):
    agent_id: ID | None = None
    executor_id: ID | None = None
    status: int | None = None


class Error(Message):
    message: str


EventType = Literal[
    "UNKNOWN",
    "SUBSCRIBED",
    "OFFERS",
    "INVERSE_OFFERS",
    "RESCIND",
    "RESCIND_INVERSE_OFFER",
    "UPDATE",
    "UPDATE_OPERATION_STATUS",
    "MESSAGE",
    "FAILURE",
    "ERROR",
    "HEARTBEAT",
]


class Event(Message):
    type: EventType
    subscribed: Subscribed | None = None
    offers: OffersEvent | None = None
    rescind: Rescind | None = None
    update: Update | None = None
    message: MessageEvent | None = None
    failure: Failure | None = None
    error: Error | None = None
    inverse_offers: msgspec.Raw = NO_RAW
    rescind_inverse_offer: msgspec.Raw = NO_RAW
    update_operation_status: msgspec.Raw = NO_RAW
