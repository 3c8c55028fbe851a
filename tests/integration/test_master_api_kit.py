"""A master on loopback plus two protocol clients for it: a scheduler stream and a fake agent (no tests here).

The scheduler side speaks raw Mesos v1 JSON, as a third-party scheduler would. The fake agent speaks the
internal agent link (``/api/v1/agent``, DESIGN.md §7): it registers, reads its event stream and posts calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from butte.master.api.app import build_app
from butte.master.registry.sqlite import SqliteRegistry
from butte.master.service import MasterService
from butte.master.state import MasterConfig, MasterState
from butte.testing.wait import until
from butte.wire.recordio import RecordIODecoder

Json = dict[str, Any]
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
AGENT_RESOURCES: list[Json] = [
    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}},
    {"name": "mem", "type": "SCALAR", "scalar": {"value": 4096.0}},
    {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31009}]}},
]


def scalar(name: str, value: float) -> Json:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def framework_info(name: str = "fw", **extra: Any) -> Json:
    return {"user": "alice", "name": name, **extra}


def subscribe_call(info: Json | None = None, framework_id: str | None = None, **extra: Any) -> Json:
    info = dict(info or framework_info())
    call: Json = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info, **extra}}
    if framework_id is not None:
        info["id"] = {"value": framework_id}
        call["framework_id"] = {"value": framework_id}
    return call


def command_task(task_id: str, agent_id: str, cpus: float = 1.0, mem: float = 128.0, **extra: Any) -> Json:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [scalar("cpus", cpus), scalar("mem", mem)],
        "command": {"value": "sleep 100"},
        **extra,
    }


class EventLog:
    """Events read off a RecordIO stream, in order; waits are polls with a deadline."""

    def __init__(self) -> None:
        self.events: list[Json] = []
        self.ended = False

    async def read(self, response: aiohttp.ClientResponse) -> None:
        decoder = RecordIODecoder()
        try:
            async for chunk in response.content.iter_any():
                for record in decoder.feed(chunk):
                    self.events.append(json.loads(record))
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended = True

    def of(self, kind: str) -> list[Json]:
        return [e for e in self.events if e["type"] == kind]

    async def wait(self, kind: str, count: int = 1, *, timeout: float = 5.0) -> list[Json]:
        """Wait until ``count`` events of ``kind`` have arrived; returns all of them."""

        def arrived() -> list[Json] | None:
            found = self.of(kind)
            return found if len(found) >= count else None

        return await until(arrived, timeout=timeout, what=f"{count} {kind}")

    async def wait_until_ended(self, timeout: float = 5.0) -> None:
        await until(lambda: self.ended, timeout=timeout, what="the stream to end")


@dataclass
class Scheduler:
    """One subscription stream of a scheduler, read in the background."""

    session: aiohttp.ClientSession
    base: str
    response: aiohttp.ClientResponse
    log: EventLog = field(default_factory=EventLog)
    reader: asyncio.Task[None] | None = None
    framework_id: str = ""

    @property
    def stream_id(self) -> str:
        return self.response.headers["Mesos-Stream-Id"]

    async def call(
        self, body: Json, *, stream_id: str | None = None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """POST a call with this stream's id (unless another is given) and read the whole answer."""
        sent = {
            **JSON_HEADERS,
            "Mesos-Stream-Id": stream_id if stream_id is not None else self.stream_id,
            **(headers or {}),
        }
        body = {"framework_id": {"value": self.framework_id}, **body}
        async with self.session.post(self.base + "/api/v1/scheduler", data=json.dumps(body), headers=sent) as response:
            await response.read()
            return response

    async def offers(self, count: int = 1, *, timeout: float = 5.0) -> list[Json]:
        """Every offer received so far, once at least ``count`` OFFERS events have arrived."""
        await self.log.wait("OFFERS", count, timeout=timeout)
        return [o for e in self.log.of("OFFERS") for o in e["offers"]["offers"]]

    def updates(self, task_id: str | None = None) -> list[Json]:
        found = [e["update"]["status"] for e in self.log.of("UPDATE")]
        return [s for s in found if task_id is None or s["task_id"]["value"] == task_id]

    async def wait_update(self, task_id: str, state: str, *, timeout: float = 5.0) -> Json:
        def match() -> Json | None:
            return next((s for s in self.updates(task_id) if s["state"] == state), None)

        return await until(match, timeout=timeout, what=f"{task_id} {state}")

    async def close(self) -> None:
        self.response.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


@dataclass
class FakeAgent:
    """A test-local agent that speaks the agent link over HTTP."""

    session: aiohttp.ClientSession
    base: str
    hostname: str = "node1"
    resources: list[Json] = field(default_factory=lambda: list(AGENT_RESOURCES))
    agent_id: str = ""
    stream_id: str = ""
    response: aiohttp.ClientResponse | None = None
    log: EventLog = field(default_factory=EventLog)
    reader: asyncio.Task[None] | None = None

    def agent_info(self) -> Json:
        info: Json = {"hostname": self.hostname, "port": 5051, "resources": self.resources}
        if self.agent_id:
            info["id"] = {"value": self.agent_id}
        return info

    async def register(self) -> str:
        await self._connect({"type": "REGISTER", "register": {"agent_info": self.agent_info()}})
        (event,) = await self.log.wait("REGISTERED")
        self.agent_id = event["registered"]["agent_id"]["value"]
        return self.agent_id

    async def reregister(
        self, tasks: list[Json], frameworks: list[Json] | None = None, executors: list[Json] | None = None
    ) -> None:
        assert self.agent_id
        body = {
            "agent_info": self.agent_info(),
            "tasks": tasks,
            "frameworks": frameworks or [],
            "executors": executors or [],
        }
        await self._connect({"type": "REREGISTER", "reregister": body})
        await self.log.wait("REREGISTERED")

    async def _connect(self, call: Json) -> None:
        await self.disconnect()
        self.log = EventLog()
        self.response = await self.session.post(
            self.base + "/api/v1/agent", data=json.dumps(call), headers=JSON_HEADERS
        )
        assert self.response.status == 200, await self.response.text()
        self.stream_id = self.response.headers["Mesos-Stream-Id"]
        self.reader = asyncio.create_task(self.log.read(self.response))

    async def disconnect(self) -> None:
        """Break the link (the master sees the stream end)."""
        if self.response is not None:
            self.response.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        self.response, self.reader = None, None

    async def call(self, body: Json, *, stream_id: str | None = None) -> int:
        headers = {**JSON_HEADERS, "Mesos-Stream-Id": stream_id if stream_id is not None else self.stream_id}
        payload = {"agent_id": {"value": self.agent_id}, **body}
        async with self.session.post(
            self.base + "/api/v1/agent", data=json.dumps(payload), headers=headers
        ) as response:
            await response.read()
            return response.status

    async def update(self, framework_id: str, task_id: str, state: str, **extra: Any) -> str:
        """Forward a status update with a fresh uuid; returns the uuid (base64)."""
        uuid = base64.b64encode(uuidlib.uuid4().bytes).decode()
        status = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR", "uuid": uuid, **extra}
        update = {"framework_id": {"value": framework_id}, "status": status}
        assert await self.call({"type": "UPDATE", "updates": [update]}) == 202
        return uuid

    def run_tasks(self) -> list[Json]:
        return [e["run_task"]["task"] for e in self.log.of("RUN_TASK")]


@dataclass
class Master:
    """A master service and its app on a loopback TestServer, with a client session."""

    service: MasterService
    server: TestServer
    session: aiohttp.ClientSession
    registry: SqliteRegistry
    clients: list[Scheduler | FakeAgent] = field(default_factory=list)

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def state(self) -> MasterState:
        return self.service.state

    async def post(
        self, path: str, body: bytes | str, headers: dict[str, str] | None = None
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.post(self.base + path, data=body, headers=headers or {}) as response:
            return response, await response.read()

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.get(self.base + path, **kwargs) as response:
            return response, await response.read()

    async def get_json(self, path: str) -> Json:
        response, body = await self.get(path)
        assert response.status == 200, body
        data: Json = json.loads(body)
        return data

    async def subscribe(self, body: Json | None = None, headers: dict[str, str] | None = None) -> Scheduler:
        """SUBSCRIBE and start reading the stream; waits for SUBSCRIBED unless the body is left to fail."""
        response = await self.session.post(
            self.base + "/api/v1/scheduler",
            data=json.dumps(body or subscribe_call()),
            headers={**JSON_HEADERS, **(headers or {})},
        )
        scheduler = Scheduler(self.session, self.base, response)
        self.clients.append(scheduler)
        if response.status == 200:
            scheduler.reader = asyncio.create_task(scheduler.log.read(response))
        return scheduler

    async def framework(self, body: Json | None = None) -> Scheduler:
        """A subscribed scheduler (SUBSCRIBED received)."""
        scheduler = await self.subscribe(body)
        assert scheduler.response.status == 200
        (event,) = await scheduler.log.wait("SUBSCRIBED")
        scheduler.framework_id = event["subscribed"]["framework_id"]["value"]
        return scheduler

    async def agent(self, hostname: str = "node1", resources: list[Json] | None = None) -> FakeAgent:
        agent = FakeAgent(self.session, self.base, hostname=hostname)
        if resources is not None:
            agent.resources = resources
        self.clients.append(agent)
        await agent.register()
        return agent

    async def close(self) -> None:
        for client in self.clients:
            if isinstance(client, Scheduler):
                await client.close()
            else:
                await client.disconnect()
        await self.service.stop()
        await self.session.close()
        await self.server.close()


def master_state(master_id: str = "", **overrides: Any) -> MasterState:
    config = MasterConfig(
        master_id=master_id or str(uuidlib.uuid4()), ip="127.0.0.1", port=5050, hostname="localhost", **overrides
    )
    return MasterState(config, random.Random(0), start_time=time.time())


@contextlib.asynccontextmanager
async def running_master(
    work_dir: Path,
    state: MasterState | None = None,
    *,
    clock: Callable[[], float] = time.time,
    allocation_interval_s: float = 60.0,
    **overrides: Any,
) -> AsyncIterator[Master]:
    """A started master (timers running) on 127.0.0.1, port 0; the registry lives in ``work_dir``.

    The batch allocation interval is long by default, so every offer a test sees was made on an event.
    """
    registry = SqliteRegistry(work_dir / "registry.db")
    service = MasterService(
        state or master_state(**overrides), registry, allocation_interval_s=allocation_interval_s, clock=clock
    )
    server = TestServer(build_app(service, {"port": "5050"}), host="127.0.0.1", port=0)
    await server.start_server()
    service.start()
    master = Master(service, server, aiohttp.ClientSession(), registry)
    try:
        yield master
    finally:
        await master.close()
        registry.close()
