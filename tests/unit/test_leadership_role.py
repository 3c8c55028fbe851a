"""Gaining and losing the lead, without ZooKeeper: the HTTP gate (307/503), epochs, stepping down, recovery."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from butte.agent.master_link import DeposedLeader, MasterLink
from butte.master.api.app import build_app
from butte.master.leadership import LeaderView
from butte.master.leadership.role import MasterRole
from butte.master.registry.sqlite import SqliteRegistry
from butte.master.service import MasterService
from butte.master.state import MasterConfig, MasterState
from butte.testing.wait import until
from butte.wire.agent_link import AgentCall, AgentEvent, Registered
from butte.wire.recordio import RecordIODecoder

LEADER_INFO = {
    "id": "other",
    "hostname": "m2.example",
    "port": 5052,
    "pid": "master@10.0.0.2:5052",
    "address": {"hostname": "m2.example", "ip": "10.0.0.2", "port": 5052},
}
Client = TestClient[web.Request, web.Application]
SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "gate"}}}


def fresh_state() -> MasterState:
    config = MasterConfig(master_id="m1", ip="127.0.0.1", port=5050, hostname="m1.example")
    return MasterState(config, random.Random(0), start_time=0.0)


@pytest_asyncio.fixture
async def master(tmp_path: Path) -> AsyncIterator[tuple[MasterRole, Client]]:
    registry = SqliteRegistry(tmp_path / "registry.db")
    service = MasterService(fresh_state(), registry)
    role = MasterRole(service, fresh_state, configured_weights={}, agent_reregister_timeout_s=0.05)
    client = TestClient(TestServer(build_app(service, {})))
    await client.start_server()
    try:
        yield role, client
    finally:
        await client.close()
        await role.close()
        await service.stop()
        registry.close()


async def test_a_standby_redirects_and_without_a_leader_answers_503(master: tuple[MasterRole, Client]) -> None:
    role, client = master
    role.on_view(LeaderView(leading=False))
    response = await client.post("/api/v1/scheduler", json=SUBSCRIBE, allow_redirects=False)
    assert (response.status, await response.text()) == (503, "No leader elected")
    assert (await client.get("/master/redirect", allow_redirects=False)).status == 503

    role.on_view(LeaderView(leading=False, epoch=4, leader_info=LEADER_INFO))
    for path in ("/api/v1/scheduler", "/master/api/v1", "/api/v1/agent"):
        response = await client.post(path, json=SUBSCRIBE, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (307, f"//m2.example:5052{path}")
    response = await client.get("/master/redirect", allow_redirects=False)
    assert response.headers["Location"] == "//m2.example:5052"
    state = await (await client.get("/master/state")).json()
    assert (state["leader"], state["leader_info"]) == ("master@10.0.0.2:5052", LEADER_INFO)
    assert (await (await client.get("/metrics/snapshot")).json())["master/elected"] == 0.0


async def test_the_leader_stamps_its_epoch_and_steps_down_at_once(master: tuple[MasterRole, Client]) -> None:
    role, client = master
    service = role.service
    role.on_view(LeaderView(leading=True, epoch=7, leader_info={"id": "m1"}))
    assert service.leading and service.epoch == 7
    assert service.stamp(AgentEvent(type="PING")).epoch == 7
    response = await client.post("/api/v1/scheduler", json=SUBSCRIBE)
    assert response.status == 200  # a subscription stream on the leader
    first_state = service.state

    role.on_view(LeaderView(leading=False, epoch=9, leader_info=LEADER_INFO))
    assert not service.leading and service.state is not first_state  # stale state is dropped
    assert service.framework_streams == {} and service.agent_streams == {}
    await response.read()  # the stream was ended by the step-down
    redirected = await client.post("/api/v1/scheduler", json=SUBSCRIBE, allow_redirects=False)
    assert redirected.status == 307

    role.on_view(LeaderView(leading=True, epoch=11))
    assert service.leading and service.epoch == 11 and role.elections == 2


async def test_agents_admitted_before_that_do_not_come_back_are_marked_unreachable(
    master: tuple[MasterRole, Client],
) -> None:
    role, _ = master
    role.service.registry.admit("a1", b'{"hostname":"h1","port":5051}')
    role.on_view(LeaderView(leading=True, epoch=1))
    await until(lambda: role.service.registry.state_of("a1") == "unreachable", timeout=5)


class Listener:
    """The agent side of a link, recording the events it is given."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def registration_call(self) -> AgentCall:
        return AgentCall(type="REGISTER")

    def on_registered(self, registered: Registered) -> None:
        pass

    def on_event(self, event: AgentEvent) -> None:
        self.events.append(event)

    def on_disconnected(self) -> None:
        pass


async def test_an_agent_ignores_a_deposed_leader() -> None:
    listener = Listener()
    async with aiohttp.ClientSession() as session:
        link = MasterLink("127.0.0.1:5050", session, listener)
        for epoch in (5, 5, None, 6):
            link._dispatch(AgentEvent(type="PING", epoch=epoch))
        with pytest.raises(DeposedLeader):
            link._dispatch(AgentEvent(type="PING", epoch=5))
        link.close()
    assert [e.epoch for e in listener.events] == [5, 5, None, 6]


async def next_event(stream: aiohttp.ClientResponse, decoder: RecordIODecoder, kind: str) -> dict[str, Any]:
    while True:
        for record in decoder.feed(await stream.content.readany()):
            event: dict[str, Any] = json.loads(record)
            if event["type"] == kind:
                return event


async def test_no_answer_for_a_task_on_an_agent_that_may_still_reregister(master: tuple[MasterRole, Client]) -> None:
    short, client = master
    # The agent must still be awaited during this test: a role with a long reregistration timeout.
    role = MasterRole(short.service, fresh_state, configured_weights={}, agent_reregister_timeout_s=60.0)
    role.service.registry.admit("a1", b'{"hostname":"h1","port":5051}')
    role.on_view(LeaderView(leading=True, epoch=1))
    stream = await client.post("/api/v1/scheduler", json=SUBSCRIBE)
    decoder = RecordIODecoder()
    framework_id = (await next_event(stream, decoder, "SUBSCRIBED"))["subscribed"]["framework_id"]
    headers = {"Mesos-Stream-Id": stream.headers["Mesos-Stream-Id"]}
    for task_id, agent_id in (("t1", "a1"), ("t2", "a9")):
        call = {"type": "RECONCILE", "framework_id": framework_id}
        call["reconcile"] = {"tasks": [{"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}]}
        assert (await client.post("/api/v1/scheduler", json=call, headers=headers)).status == 202
    update = await next_event(stream, decoder, "UPDATE")
    assert update["update"]["status"]["task_id"]["value"] == "t2"  # t1 got no answer: a1 may come back with it
    stream.close()
