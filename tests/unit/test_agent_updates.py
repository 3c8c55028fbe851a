"""The update channel: the pure manager's effects carried out on a real event loop."""

from __future__ import annotations

import asyncio

from butte.agent.status_updates import StatusUpdateManager, UpdateAcknowledged
from butte.agent.updates import UpdateChannel, make_status
from butte.testing.wait import until
from butte.wire.agent_link import AgentCall


async def test_unacknowledged_updates_are_retried_and_acks_stop_them() -> None:
    sent: list[AgentCall] = []
    acked: list[UpdateAcknowledged] = []

    async def send(call: AgentCall) -> bool:
        sent.append(call)
        return True

    manager = StatusUpdateManager(retry_initial_s=0.05, retry_max_s=0.1)
    channel = UpdateChannel(send, lambda: "A", acked.append, manager=manager)
    retries = asyncio.create_task(channel.run_retries())
    status = make_status(
        "t",
        "TASK_RUNNING",
        source="SOURCE_EXECUTOR",
        agent_id="A",
        executor_id="t",
        container_id="c",
        now=1.0,
        uuid="dXVpZA==",
    )
    channel.submit("F", status)
    await asyncio.sleep(0)
    assert sent == []  # paused until the master registers us
    channel.connected()
    await until(lambda: len(sent) >= 3, timeout=5)  # the first send and two retries
    call = sent[0]
    assert call.type == "UPDATE" and call.agent_id is not None and call.agent_id.value == "A"
    assert [u.framework_id.value for u in call.updates] == ["F"]
    assert {u.status.uuid for c in sent for u in c.updates} == {"dXVpZA=="}
    channel.acknowledge("F", "t", "dXVpZA==")
    assert [a.uuid for a in acked] == ["dXVpZA=="]
    assert manager.next_retry_at() is None  # nothing is left to retry
    retries.cancel()
