"""The scheduler SDK against a fake master that checks every request: subscribe, events, calls, acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from test_scheduler_sdk_support import FRAMEWORK_ID, FakeMaster, offer, started, status_uuid, update

from butte.scheduler.errors import CallFailed, CallForbidden, Disconnected, FailedOver, SubscribeRefused
from butte.scheduler.sdk import ConnectionLost, SchedulerClient, SchedulerEvent, command_task
from butte.wire.base import ID
from butte.wire.mesos import ExecutorInfo, FrameworkInfo, TaskStatus
from butte.wire.scheduler import Event

INFO = FrameworkInfo(user="alice", name="sdk-test")


@pytest.fixture
async def master() -> AsyncIterator[FakeMaster]:
    async with started(FakeMaster()) as m:
        yield m


def client_for(master: FakeMaster, **kwargs: Any) -> SchedulerClient:
    options: dict[str, Any] = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05, **kwargs}
    return SchedulerClient(master.address, INFO, **options)


async def next_event(events: AsyncIterator[SchedulerEvent], timeout_s: float = 5.0) -> SchedulerEvent:
    async with asyncio.timeout(timeout_s):
        return await anext(events)


async def next_of_type(events: AsyncIterator[SchedulerEvent], kind: str) -> SchedulerEvent:
    while True:
        event = await next_event(events)
        if event.type == kind:
            return event


async def test_subscribe_sends_exact_call_and_returns_subscribed(master: FakeMaster) -> None:
    async with client_for(master) as client:
        subscribed = await client.subscribe(timeout_s=5)
        assert subscribed.framework_id.value == FRAMEWORK_ID
        assert client.framework_id == FRAMEWORK_ID
        assert client.snapshot().connected
    assert master.subscribe_requests == [
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "alice", "name": "sdk-test"}}}
    ]


async def test_events_reassemble_records_split_across_chunks(master: FakeMaster) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        events = client.events()
        assert (await next_event(events)).type == "HEARTBEAT"
        offers = b'{"type":"OFFERS","offers":{"offers":[' + _offer_bytes("O1") + b"]}}"
        record = b"%d\n%s" % (len(offers), offers)
        # The length prefix, then the body in three pieces, then two records in one chunk.
        for piece in (record[:2], record[2:40], record[40:90], record[90:]):
            await stream.send_raw(piece)
        await stream.send({"type": "RESCIND", "rescind": {"offer_id": {"value": "O1"}}}, {"type": "HEARTBEAT"})
        got = await next_event(events)
        assert isinstance(got, Event) and got.offers is not None
        assert [o.id.value for o in got.offers.offers] == ["O1"]
        assert [(await next_event(events)).type for _ in range(2)] == ["RESCIND", "HEARTBEAT"]


def _offer_bytes(offer_id: str) -> bytes:
    import json

    return json.dumps(offer(offer_id)).encode()


async def test_undecodable_event_is_skipped(master: FakeMaster) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        events = client.events()
        await stream.send({"type": "SOMETHING_NEW"}, {"type": "RESCIND", "rescind": {"offer_id": {"value": "O"}}})
        assert (await next_of_type(events, "RESCIND")).type == "RESCIND"


@pytest.mark.parametrize(
    ("method", "kwargs", "expected"),
    [
        (
            "decline",
            {"offer_ids": ["O1", "O2"], "refuse_seconds": 60.0},
            {"decline": {"offer_ids": [{"value": "O1"}, {"value": "O2"}], "filters": {"refuse_seconds": 60.0}}},
        ),
        ("decline", {"offer_ids": ["O1"]}, {"decline": {"offer_ids": [{"value": "O1"}]}}),
        ("revive", {}, {}),
        ("revive", {"roles": ["a"]}, {"revive": {"roles": ["a"]}}),
        ("suppress", {}, {}),
        ("suppress", {"roles": ["a", "b"]}, {"suppress": {"roles": ["a", "b"]}}),
        ("kill", {"task_id": "t1"}, {"kill": {"task_id": {"value": "t1"}}}),
        (
            "kill",
            {"task_id": "t1", "agent_id": "S1", "grace_period_s": 2.5},
            {
                "kill": {
                    "task_id": {"value": "t1"},
                    "agent_id": {"value": "S1"},
                    "kill_policy": {"grace_period": {"nanoseconds": 2_500_000_000}},
                }
            },
        ),
        (
            "shutdown",
            {"executor_id": "e1", "agent_id": "S1"},
            {"shutdown": {"executor_id": {"value": "e1"}, "agent_id": {"value": "S1"}}},
        ),
        ("reconcile", {}, {"reconcile": {}}),
        (
            "reconcile",
            {"tasks": [("t1", "S1"), ("t2", None)]},
            {
                "reconcile": {
                    "tasks": [
                        {"task_id": {"value": "t1"}, "agent_id": {"value": "S1"}},
                        {"task_id": {"value": "t2"}},
                    ]
                }
            },
        ),
        (
            "message",
            {"agent_id": "S1", "executor_id": "e1", "data": b"hi"},
            {"message": {"agent_id": {"value": "S1"}, "executor_id": {"value": "e1"}, "data": "aGk="}},
        ),
    ],
)
async def test_call_bodies(master: FakeMaster, method: str, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        await getattr(client, method)(**kwargs)
        call = await master.next_call()
    assert call == {"type": method.upper(), "framework_id": {"value": FRAMEWORK_ID}, **expected}


async def test_launch_accepts_with_one_launch_operation(master: FakeMaster) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send({"type": "OFFERS", "offers": {"offers": [offer("O1")]}})
        event = await next_of_type(client.events(), "OFFERS")
        assert isinstance(event, Event) and event.offers is not None
        the_offer = event.offers.offers[0]
        task = command_task("t1", the_offer.agent_id.value, "echo hi", cpus=0.5, mem=64)
        await client.launch(the_offer, [task], refuse_seconds=1.0)
        call = await master.next_call()
    assert call["type"] == "ACCEPT"
    assert call["accept"] == {
        "offer_ids": [{"value": "O1"}],
        "operations": [
            {
                "type": "LAUNCH",
                "launch": {
                    "task_infos": [
                        {
                            "name": "t1",
                            "task_id": {"value": "t1"},
                            "agent_id": {"value": "M-S0"},
                            "resources": [
                                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "role": "*"},
                                {"name": "mem", "type": "SCALAR", "scalar": {"value": 64.0}, "role": "*"},
                            ],
                            "command": {"value": "echo hi"},
                        }
                    ]
                },
            }
        ],
        "filters": {"refuse_seconds": 1.0},
    }


async def test_launch_group_and_update_framework(master: FakeMaster) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send({"type": "OFFERS", "offers": {"offers": [offer("O1"), offer("O2")]}})
        event = await next_of_type(client.events(), "OFFERS")
        assert isinstance(event, Event) and event.offers is not None
        executor = ExecutorInfo(executor_id=ID(value="ex"), type="DEFAULT")
        task = command_task("t1", "M-S0", ["/bin/true"], cpus=0.1, mem=32)
        await client.launch_group(event.offers.offers, executor, [task])
        accept = await master.next_call()
        await client.update_framework(FrameworkInfo(user="alice", name="renamed"), suppressed_roles=["*"])
        updated = await master.next_call()
    assert accept["accept"]["offer_ids"] == [{"value": "O1"}, {"value": "O2"}]
    operation = accept["accept"]["operations"][0]
    assert operation["type"] == "LAUNCH_GROUP"
    assert operation["launch_group"]["executor"] == {"type": "DEFAULT", "executor_id": {"value": "ex"}}
    assert operation["launch_group"]["task_group"]["tasks"][0]["command"] == {
        "shell": False,
        "value": "/bin/true",
        "arguments": ["/bin/true"],
    }
    assert updated["update_framework"] == {
        "framework_info": {"user": "alice", "name": "renamed", "id": {"value": FRAMEWORK_ID}},
        "suppressed_roles": ["*"],
    }


async def test_auto_acknowledge_after_the_consumer_is_done_and_only_with_uuid(master: FakeMaster) -> None:
    uuid = status_uuid(7)
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send(update("t1", "TASK_LOST"), update("t1", "TASK_RUNNING", uuid), {"type": "HEARTBEAT"})
        events = client.events()
        assert (await next_of_type(events, "UPDATE")).type == "UPDATE"  # no uuid: never acknowledged
        running = await next_of_type(events, "UPDATE")
        assert isinstance(running, Event) and running.update is not None
        assert master.calls.empty()  # not before the consumer comes back for more
        await next_event(events)
        ack = await master.next_call()
    assert ack == {
        "type": "ACKNOWLEDGE",
        "framework_id": {"value": FRAMEWORK_ID},
        "acknowledge": {"agent_id": {"value": "M-S0"}, "task_id": {"value": "t1"}, "uuid": uuid},
    }
    assert master.calls.empty()


async def test_manual_acknowledge_ignores_master_made_updates(master: FakeMaster) -> None:
    async with client_for(master, auto_acknowledge=False) as client:
        await client.subscribe(timeout_s=5)
        await client.acknowledge(TaskStatus(task_id=ID(value="t"), state="TASK_LOST"))
        await client.acknowledge(
            TaskStatus(task_id=ID(value="t"), state="TASK_RUNNING", agent_id=ID(value="S"), uuid=status_uuid(1))
        )
        ack = await master.next_call()
    assert ack["acknowledge"]["uuid"] == status_uuid(1)
    assert master.calls.empty()


async def test_many_acks_go_out_concurrently(master: FakeMaster) -> None:
    count = 300
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send(*(update(f"t{n}", "TASK_RUNNING", status_uuid(n)) for n in range(count)))
        await stream.send({"type": "HEARTBEAT"})
        events = client.events()
        for _ in range(count):
            await next_of_type(events, "UPDATE")
        await next_event(events)
        acked = {(await master.next_call())["acknowledge"]["uuid"] for _ in range(count)}
    assert acked == {status_uuid(n) for n in range(count)}


async def test_call_errors_carry_status_and_body(master: FakeMaster) -> None:
    master.call_answer = lambda call: web.Response(status=403, text="Framework is not subscribed")
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        with pytest.raises(CallForbidden) as caught:
            await client.revive()
    assert caught.value.status == 403
    assert caught.value.body == "Framework is not subscribed"
    assert caught.value.call_type == "REVIVE"


async def test_calls_before_subscribe_raise_disconnected(master: FakeMaster) -> None:
    async with client_for(master) as client:
        with pytest.raises(Disconnected, match="not subscribed"):
            await client.decline(["O1"])


async def test_subscribe_refused_by_error_event(master: FakeMaster) -> None:
    master.send_subscribed = False
    async with client_for(master) as client:
        task = asyncio.create_task(client.subscribe(timeout_s=5))
        stream = await master.next_stream()
        await stream.send({"type": "ERROR", "error": {"message": "Role 'x' is not allowed"}})
        stream.end()
        with pytest.raises(SubscribeRefused, match="Role 'x'"):
            await task


async def test_subscribe_rejected_with_400_raises(master: FakeMaster) -> None:
    master.subscribe_answers.append(lambda: web.Response(status=400, text="bad framework"))
    async with client_for(master) as client:
        with pytest.raises(CallFailed) as caught:
            await client.subscribe(timeout_s=5)
        assert (caught.value.status, caught.value.body) == (400, "bad framework")
        await client.subscribe(timeout_s=5)  # a failed subscribe may be tried again


async def test_subscribe_gives_up_after_timeout_and_says_why() -> None:
    async with SchedulerClient("127.0.0.1:1", INFO, initial_backoff_s=0.01, max_backoff_s=0.02) as client:
        with pytest.raises(Disconnected, match=r"last failure: SUBSCRIBE to 127\.0\.0\.1:1 got no answer"):
            await client.subscribe(timeout_s=0.3)


async def test_failed_over_error_ends_events_and_later_calls_fail(master: FakeMaster) -> None:
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
        stream.end()
        seen = [e.type async for e in client.events()]
        assert seen == ["HEARTBEAT", "ERROR"]
        with pytest.raises(FailedOver, match="Framework failed over"):
            await client.revive()
    assert len(master.subscribe_requests) == 1


async def test_close_ends_events_without_teardown(master: FakeMaster) -> None:
    client = client_for(master)
    await client.subscribe(timeout_s=5)
    events = client.events()
    await next_event(events)
    await client.close()
    assert [e async for e in events] == []
    assert master.calls.empty()


async def test_teardown_sends_teardown_and_closes(master: FakeMaster) -> None:
    client = client_for(master)
    await client.subscribe(timeout_s=5)
    await client.teardown()
    assert await master.next_call() == {"type": "TEARDOWN", "framework_id": {"value": FRAMEWORK_ID}}
    assert not client.snapshot().connected
    with pytest.raises(Disconnected):
        await client.revive()


async def test_given_session_is_not_closed(master: FakeMaster) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with client_for(master, session=session) as client:
            await client.subscribe(timeout_s=5)
        assert not session.closed


def test_connection_lost_is_not_a_mesos_event() -> None:
    lost = ConnectionLost("gone")
    assert (lost.type, lost.reason) == ("DISCONNECTED", "gone")


async def test_framework_id_in_info_fails_over_on_first_subscribe(master: FakeMaster) -> None:
    info = FrameworkInfo(user="alice", name="sdk-test", id=ID(value=FRAMEWORK_ID))
    async with SchedulerClient(master.address, info) as client:
        assert client.framework_id == FRAMEWORK_ID
        await client.subscribe(timeout_s=5)
        with pytest.raises(RuntimeError):
            await client.subscribe()
    assert master.subscribe_requests[0]["framework_id"] == {"value": FRAMEWORK_ID}
    assert master.subscribe_requests[0]["subscribe"]["framework_info"]["id"] == {"value": FRAMEWORK_ID}


async def test_failed_acks_are_logged_not_raised(master: FakeMaster, caplog: pytest.LogCaptureFixture) -> None:
    master.call_answer = lambda call: web.Response(status=400, text="Framework cannot be found")
    async with client_for(master) as client:
        await client.subscribe(timeout_s=5)
        stream = await master.next_stream()
        await stream.send(update("t1", "TASK_RUNNING", status_uuid(1)), {"type": "HEARTBEAT"})
        events = client.events()
        await next_of_type(events, "UPDATE")
        await next_event(events)
        await master.next_call()
    assert "could not acknowledge TASK_RUNNING of task t1" in caplog.text
