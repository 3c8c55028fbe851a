"""mesos.v1.master Call (operator API) — the calls Butte acts on; see ``mesos-v1-api.md`` §4."""

from __future__ import annotations

import msgspec

from butte.wire.base import ID, NO_RAW, Message


class WeightInfo(Message):
    weight: float
    role: str


class UpdateWeights(Message):
    weight_infos: list[WeightInfo] = []


class Teardown(Message):
    framework_id: ID


class AgentRef(Message):
    agent_id: ID


class OperatorCall(Message):
    type: str
    update_weights: UpdateWeights | None = None
    teardown: Teardown | None = None
    mark_agent_gone: AgentRef | None = None
    get_metrics: msgspec.Raw = NO_RAW
