"""The SDK never hangs on a master that does not answer: a paused leader, or a stale redirect to one.

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
from butte.scheduler.errors import Disconnected
from butte.scheduler.sdk import SchedulerClient
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


async def test_the_endpoint_bounds_the_wait_for_response_headers() -> None:
    async with Blackhole().running() as hole, aiohttp.ClientSession() as session:
        endpoint = SchedulerEndpoint(session, call_timeout_s=0.2)
        call = Call(type="SUBSCRIBE", subscribe=Subscribe(framework_info=INFO))
        with pytest.raises(Disconnected, match=r"within 0\.2s"):
            async with asyncio.timeout(3):
                await endpoint.subscribe(hole.address, call)
