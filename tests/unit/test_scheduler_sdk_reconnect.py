"""Failover paths of the scheduler SDK: broken streams, missed heartbeats, redirects, 503, leader changes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from test_scheduler_sdk_support import FRAMEWORK_ID, FakeMaster, started

from butte.core.errors import ValidationError
from butte.scheduler.backoff import Backoff
from butte.scheduler.connection import master_from_location
from butte.scheduler.detector import StaticDetector, detector_for, normalize_address
from butte.scheduler.errors import Disconnected
from butte.scheduler.sdk import ConnectionLost, SchedulerClient, SchedulerEvent
from butte.wire.mesos import FrameworkInfo
from butte.wire.scheduler import Event

INFO = FrameworkInfo(user="alice", name="sdk-test", failover_timeout=60.0)
FAST: dict[str, Any] = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture
async def master() -> AsyncIterator[FakeMaster]:
    async with started(FakeMaster()) as m:
        yield m


async def next_event(events: AsyncIterator[SchedulerEvent], timeout_s: float = 5.0) -> SchedulerEvent:
    async with asyncio.timeout(timeout_s):
        return await anext(events)


async def until_not_heartbeat(events: AsyncIterator[SchedulerEvent]) -> SchedulerEvent:
    while True:
        event = await next_event(events)
        if event.type != "HEARTBEAT":
            return event


def resubscribe_body() -> dict[str, Any]:
    info = {"user": "alice", "name": "sdk-test", "id": {"value": FRAMEWORK_ID}, "failover_timeout": 60.0}
    return {"type": "SUBSCRIBE", "framework_id": {"value": FRAMEWORK_ID}, "subscribe": {"framework_info": info}}


async def test_broken_stream_resubscribes_with_framework_id(master: FakeMaster) -> None:
    async with SchedulerClient(master.address, INFO, **FAST) as client:
        await client.subscribe(timeout_s=5)
        first = await master.next_stream()
        events = client.events()
        first.abort()
        lost = await until_not_heartbeat(events)
        assert isinstance(lost, ConnectionLost)
        again = await until_not_heartbeat(events)
        assert isinstance(again, Event) and again.type == "SUBSCRIBED"
        second = await master.next_stream()
        assert second.body == resubscribe_body()
        await client.revive()  # calls now carry the new stream id (the fake master checks)
        await master.next_call()
        assert client.snapshot().subscriptions == 2


async def test_stream_closed_by_master_resubscribes(master: FakeMaster) -> None:
    async with SchedulerClient(master.address, INFO, **FAST) as client:
        await client.subscribe(timeout_s=5)
        (await master.next_stream()).end()
        events = client.events()
        lost = await until_not_heartbeat(events)
        assert isinstance(lost, ConnectionLost) and "closed the event stream" in lost.reason
        assert (await until_not_heartbeat(events)).type == "SUBSCRIBED"


async def test_missed_heartbeats_trigger_resubscription() -> None:
    quiet = FakeMaster(heartbeat_interval_s=0.05)  # goes quiet after the first HEARTBEAT
    async with started(quiet), SchedulerClient(quiet.address, INFO, **FAST) as client:
        await client.subscribe(timeout_s=5)
        events = client.events()
        lost = await until_not_heartbeat(events)
        assert isinstance(lost, ConnectionLost) and "no event" in lost.reason
        assert (await until_not_heartbeat(events)).type == "SUBSCRIBED"
        assert quiet.subscribe_requests[-1] == resubscribe_body()


async def test_disconnected_calls_fail_fast_while_reconnecting(master: FakeMaster) -> None:
    async with SchedulerClient(master.address, INFO, initial_backoff_s=5, max_backoff_s=5) as client:
        await client.subscribe(timeout_s=5)
        master.subscribe_answers.append(lambda: web.Response(status=503, text="No leader elected"))
        (await master.next_stream()).abort()
        lost = await until_not_heartbeat(client.events())
        assert isinstance(lost, ConnectionLost)
        with pytest.raises(Disconnected, match="not connected"):
            await client.revive()
        assert client.snapshot().disconnect_reason == lost.reason


async def test_without_reconnect_events_end_after_connection_lost(master: FakeMaster) -> None:
    async with SchedulerClient(master.address, INFO, reconnect=False, **FAST) as client:
        await client.subscribe(timeout_s=5)
        (await master.next_stream()).abort()
        seen = [e.type async for e in client.events()]
    assert seen[-1] == "DISCONNECTED"
    assert len(master.subscribe_requests) == 1


async def test_503_is_retried_with_backoff(master: FakeMaster) -> None:
    for _ in range(2):
        master.subscribe_answers.append(lambda: web.Response(status=503, text="No leader elected"))
    async with SchedulerClient(master.address, INFO, **FAST) as client:
        subscribed = await client.subscribe(timeout_s=5)
    assert subscribed.framework_id.value == FRAMEWORK_ID
    assert len(master.subscribe_requests) == 3


@pytest.mark.parametrize("form", ["//{}/api/v1/scheduler", "http://{}/api/v1/scheduler", "{}"])
async def test_redirect_to_the_leader(form: str) -> None:
    async with started(FakeMaster()) as leader, started(FakeMaster()) as standby:
        redirect = web.Response(status=307, headers={"Location": form.format(leader.address)})
        standby.subscribe_answers.append(lambda: redirect)
        async with SchedulerClient(standby.address, INFO, **FAST) as client:
            await client.subscribe(timeout_s=5)
            await client.suppress()
            assert (await leader.next_call())["type"] == "SUPPRESS"
            assert client.snapshot().master == leader.address
        assert len(standby.subscribe_requests) == 1
        assert standby.calls.empty()


class SwitchingDetector:
    """A detector whose leader a test moves."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.changed = asyncio.Condition()

    async def leader(self) -> str:
        return self.address

    async def next_leader(self, previous: str | None) -> str:
        async with self.changed:
            await self.changed.wait_for(lambda: self.address != previous)
            return self.address

    async def move_to(self, address: str) -> None:
        async with self.changed:
            self.address = address
            self.changed.notify_all()


async def test_new_leader_from_detector_moves_the_stream() -> None:
    async with started(FakeMaster()) as old, started(FakeMaster()) as new:
        detector = SwitchingDetector(old.address)
        async with SchedulerClient(detector, INFO, **FAST) as client:
            await client.subscribe(timeout_s=5)
            await detector.move_to(new.address)
            events = client.events()
            lost = await until_not_heartbeat(events)
            assert isinstance(lost, ConnectionLost) and new.address in lost.reason
            assert (await until_not_heartbeat(events)).type == "SUBSCRIBED"
            assert new.subscribe_requests == [resubscribe_body()]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(4))
    delays = [backoff.next_delay_s() for _ in range(6)]
    windows = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(w / 2 <= d <= w for d, w in zip(delays, windows, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay_s() <= 1.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1, random.Random())


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("//m2:5050/api/v1/scheduler", "m2:5050"),
        ("http://10.0.0.2:5050/master/api/v1/scheduler", "10.0.0.2:5050"),
        ("m3:5051", "m3:5051"),
        ("m3:5051/redirect", "m3:5051"),
    ],
)
def test_master_from_location(location: str, expected: str) -> None:
    assert master_from_location(location) == expected


def test_master_from_empty_location_is_disconnected() -> None:
    with pytest.raises(Disconnected):
        master_from_location("")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("m1:5050", "m1:5050"), ("m1", "m1:5050"), ("http://m1:6060/", "m1:6060"), ("[::1]", "[::1]:5050")],
)
def test_normalize_address(text: str, expected: str) -> None:
    assert normalize_address(text) == expected


@pytest.mark.parametrize("text", ["", "m1:port", "m1:70000"])
def test_normalize_address_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        normalize_address(text)


async def test_static_detector_never_changes() -> None:
    detector = detector_for("m1:5050")
    assert isinstance(detector, StaticDetector)
    assert await detector.leader() == "m1:5050"
    assert await detector.next_leader(None) == "m1:5050"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await detector.next_leader("m1:5050")


def test_zookeeper_urls_get_a_zookeeper_detector() -> None:
    from butte.scheduler.zk_detector import ZkDetector, ZkUrl

    detector = detector_for("zk://z1:2181,z2:2181/butte")
    assert isinstance(detector, ZkDetector)
    assert detector.url == ZkUrl(hosts="z1:2181,z2:2181", path="/butte")
