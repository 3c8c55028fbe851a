"""The SDK never hangs on a master that does not answer: stale redirects after an election, paused leaders.

A "blackhole" stands in for a paused (SIGSTOP) master: it accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_scheduler_sdk_support import FakeMaster, started

from butte.scheduler.connection import SchedulerEndpoint
from butte.scheduler.detector import LeaderWitness, StaticDetector, redirect_refusal
from butte.scheduler.errors import Disconnected
from butte.scheduler.sdk import SchedulerClient
from butte.testing.wait import until
from butte.wire.mesos import FrameworkInfo
from butte.wire.scheduler import Call, Subscribe

INFO = FrameworkInfo(user="alice", name="sdk-stale-redirect", failover_timeout=60.0)
FAST: dict[str, Any] = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}


class Blackhole:
    """A listener that accepts every connection, reads what comes, and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Blackhole]:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        try:
            yield self
        finally:
            for writer in self._writers:
                writer.close()
            self._server.close()
            await self._server.wait_closed()


class ElectionDetector:
    """A detector that watches the election (like ZkDetector): it knows the leader without waiting."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.changed = asyncio.Condition()

    def known_leader(self) -> str | None:
        return self.address

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

    async def close(self) -> None:
        pass


def redirect_to(address: str) -> web.Response:
    return web.Response(status=307, headers={"Location": f"//{address}/api/v1/scheduler"})


async def test_a_redirect_to_a_silent_master_times_out_and_restarts_from_the_detector() -> None:
    """A plain host:port detector follows the 307, gives up on the silent master, asks the first one again."""
    async with Blackhole().running() as hole, started(FakeMaster()) as leader, started(FakeMaster()) as standby:
        standby.subscribe_answers.append(lambda: redirect_to(hole.address))  # stale: names the paused master
        standby.subscribe_answers.append(lambda: redirect_to(leader.address))  # caught up
        began = time.monotonic()
        async with SchedulerClient(standby.address, INFO, call_timeout_s=0.5, **FAST) as client:
            await client.subscribe(timeout_s=5)
            assert client.snapshot().master == leader.address
        assert time.monotonic() - began < 4
        assert hole.connections == 1 and len(standby.subscribe_requests) == 2 and len(leader.subscribe_requests) == 1


async def test_a_redirect_away_from_the_elected_leader_is_not_followed() -> None:
    """The detector knows the new leader: its stale 307 to the old (paused) one is ignored, no timeout needed."""
    async with Blackhole().running() as hole, started(FakeMaster()) as new:
        new.subscribe_answers.append(lambda: redirect_to(hole.address))
        async with SchedulerClient(ElectionDetector(new.address), INFO, call_timeout_s=30, **FAST) as client:
            await client.subscribe(timeout_s=3)
            assert client.snapshot().master == new.address
        assert hole.connections == 0 and len(new.subscribe_requests) == 2


async def test_an_attempt_on_a_deposed_leader_is_dropped_when_the_detector_moves() -> None:
    """The detector still names the paused master; the attempt ends as soon as it names the new one."""
    async with Blackhole().running() as hole, started(FakeMaster()) as new:
        detector = ElectionDetector(hole.address)
        async with SchedulerClient(detector, INFO, call_timeout_s=30, **FAST) as client:
            subscribing = asyncio.create_task(client.subscribe(timeout_s=3))
            await until(lambda: hole.connections > 0, timeout=3, interval=0.01, what="SUBSCRIBE to the paused master")
            await detector.move_to(new.address)
            await subscribing
            assert client.snapshot().master == new.address


async def test_a_resubscription_after_failover_skips_the_stale_redirect() -> None:
    """After the stream breaks, the resubscription also ignores a 307 to the master the detector left."""
    async with Blackhole().running() as hole, started(FakeMaster()) as old, started(FakeMaster()) as new:
        detector = ElectionDetector(old.address)
        async with SchedulerClient(detector, INFO, call_timeout_s=30, **FAST) as client:
            await client.subscribe(timeout_s=3)
            new.subscribe_answers.append(lambda: redirect_to(hole.address))
            await detector.move_to(new.address)
            await new.next_stream(timeout_s=3)
            assert hole.connections == 0 and len(new.subscribe_requests) == 2


async def test_the_endpoint_bounds_the_wait_for_response_headers() -> None:
    async with Blackhole().running() as hole, aiohttp.ClientSession() as session:
        endpoint = SchedulerEndpoint(session, call_timeout_s=0.2)
        call = Call(type="SUBSCRIBE", subscribe=Subscribe(framework_info=INFO))
        with pytest.raises(Disconnected, match=r"within 0\.2s"):
            async with asyncio.timeout(3):
                await endpoint.subscribe(hole.address, call)


async def test_redirect_refusal_only_with_a_detector_that_knows_another_leader() -> None:
    assert redirect_refusal(StaticDetector("m1:5050"), "m2:5050") is None
    detector = ElectionDetector("m2:5050")
    assert redirect_refusal(detector, "m2:5050") is None
    refusal = redirect_refusal(detector, "m1:5050")
    assert refusal is not None and "m2:5050" in refusal


def test_the_zookeeper_detector_is_a_leader_witness_and_a_fixed_address_is_not() -> None:
    from butte.scheduler.zk_detector import ZkDetector

    zk = ZkDetector("zk://127.0.0.1:2181/butte")
    assert isinstance(zk, LeaderWitness) and zk.known_leader() is None  # nothing seen yet: redirects are followed
    assert not isinstance(StaticDetector("m1:5050"), LeaderWitness)
