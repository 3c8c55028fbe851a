"""``/api/v1/scheduler`` over HTTP: subscription streams and the status codes of ``mesos-v1-api.md`` §2.1."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_master_api_kit import JSON_HEADERS, Master, framework_info, running_master, subscribe_call

from butte.master.model import FrameworkLink
from butte.testing.wait import until


@pytest_asyncio.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    async with running_master(tmp_path) as running:
        yield running


# ---- SUBSCRIBE ----


async def test_subscribe_streams_subscribed_then_a_heartbeat(master: Master) -> None:
    scheduler = await master.subscribe()
    response = scheduler.response
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Mesos-Stream-Id"]
    assert "Content-Length" not in response.headers
    await scheduler.log.wait("HEARTBEAT")
    first, second = scheduler.log.events[:2]
    assert (first["type"], second) == ("SUBSCRIBED", {"type": "HEARTBEAT"})
    subscribed = first["subscribed"]
    master_id = master.state.config.master_id
    assert subscribed["framework_id"] == {"value": f"{master_id}-0000"}
    assert subscribed["heartbeat_interval_seconds"] == 15.0
    assert subscribed["master_info"]["id"] == master_id
    assert subscribed["master_info"]["port"] == 5050


async def test_frameworks_are_numbered_in_order(master: Master) -> None:
    first = await master.framework()
    second = await master.framework()
    master_id = master.state.config.master_id
    assert (first.framework_id, second.framework_id) == (f"{master_id}-0000", f"{master_id}-0001")


async def test_resubscribing_fails_the_old_stream_over(master: Master) -> None:
    old = await master.framework()
    new = await master.framework(subscribe_call(framework_id=old.framework_id))
    assert new.framework_id == old.framework_id
    (error,) = await old.log.wait("ERROR")
    assert error["error"]["message"] == "Framework failed over"
    await old.log.wait_until_ended()
    assert old.log.events[-1]["type"] == "ERROR"
    # The new stream is the framework's now: its calls work, the old stream id is refused.
    assert (await new.call({"type": "REVIVE"})).status == 202
    assert (await new.call({"type": "REVIVE"}, stream_id=old.stream_id)).status == 400
    assert master.state.frameworks[new.framework_id].connected


@pytest.mark.parametrize(
    "body",
    [
        subscribe_call(framework_info(roles=["a"])),
        subscribe_call(framework_info(roles=["a"], capabilities=[{"type": "MULTI_ROLE"}]), suppressed_roles=["b"]),
        subscribe_call(framework_info(role="a/b")),
    ],
    ids=["roles-without-multi-role", "suppressed-not-subscribed", "bad-role-name"],
)
async def test_an_invalid_framework_gets_a_200_stream_with_one_error(master: Master, body: dict[str, object]) -> None:
    scheduler = await master.subscribe(body)
    assert scheduler.response.status == 200
    await scheduler.log.wait_until_ended()
    assert [e["type"] for e in scheduler.log.events] == ["ERROR"]
    assert scheduler.log.events[0]["error"]["message"]
    assert master.state.frameworks == {}


async def test_roles_outside_the_whitelist_get_an_error_event(tmp_path: Path) -> None:
    async with running_master(tmp_path, roles=frozenset({"web"})) as master:
        scheduler = await master.subscribe(subscribe_call(framework_info(role="db")))
        await scheduler.log.wait_until_ended()
        (error,) = scheduler.log.events
        assert error["type"] == "ERROR" and "--roles" in error["error"]["message"]
        allowed = await master.framework(subscribe_call(framework_info(role="web")))
        assert allowed.framework_id


async def test_subscribe_with_a_stream_id_header_is_a_bad_request(master: Master) -> None:
    scheduler = await master.subscribe(headers={"Mesos-Stream-Id": "abc"})
    assert scheduler.response.status == 400
    assert master.state.frameworks == {}


@pytest.mark.parametrize("accept", ["application/x-protobuf", "text/html"])
async def test_subscribe_that_does_not_accept_json_is_406(master: Master, accept: str) -> None:
    scheduler = await master.subscribe(headers={"Accept": accept})
    assert scheduler.response.status == 406


@pytest.mark.parametrize("accept", ["*/*", "application/*", "application/json;q=0.9, text/plain"])
async def test_subscribe_accepts_anything_that_admits_json(master: Master, accept: str) -> None:
    scheduler = await master.subscribe(headers={"Accept": accept})
    assert scheduler.response.status == 200


async def test_subscribe_without_accept_defaults_to_json(master: Master) -> None:
    body = json.dumps(subscribe_call())
    async with master.session.post(
        master.base + "/api/v1/scheduler", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        {**subscribe_call(), "framework_id": {"value": "x"}},
        subscribe_call(framework_info(id={"value": "x"})),
        {**subscribe_call(framework_info(id={"value": "x"})), "framework_id": {"value": "y"}},
    ],
    ids=["call-id-only", "info-id-only", "different"],
)
async def test_subscribe_with_mismatched_framework_ids_is_400(master: Master, body: dict[str, object]) -> None:
    response, text = await master.post("/api/v1/scheduler", json.dumps(body), JSON_HEADERS)
    assert response.status == 400
    assert b"framework_info.id" in text


async def test_subscribe_is_also_served_under_the_master_prefix(master: Master) -> None:
    body = json.dumps(subscribe_call())
    async with master.session.post(
        master.base + "/master/api/v1/scheduler", data=body, headers=JSON_HEADERS
    ) as response:
        assert response.status == 200
        line = await response.content.readline()
        assert int(line) > 0


# ---- other calls: who may call ----


async def test_a_call_for_an_unknown_framework_is_400(master: Master) -> None:
    body = {"type": "REVIVE", "framework_id": {"value": "nope"}}
    response, text = await master.post("/api/v1/scheduler", json.dumps(body), {**JSON_HEADERS, "Mesos-Stream-Id": "s"})
    assert response.status == 400
    assert b"Framework cannot be found" in text


async def test_a_disconnected_framework_gets_403(master: Master) -> None:
    scheduler = await master.framework(subscribe_call(framework_info(failover_timeout=60.0)))
    await scheduler.close()
    framework = master.state.frameworks[scheduler.framework_id]
    await until(lambda: framework.link is FrameworkLink.DISCONNECTED, timeout=5.0)
    response = await scheduler.call({"type": "REVIVE"})
    assert response.status == 403


async def test_stream_id_must_be_present_and_current(master: Master) -> None:
    scheduler = await master.framework()
    body = json.dumps({"type": "REVIVE", "framework_id": {"value": scheduler.framework_id}})
    response, text = await master.post("/api/v1/scheduler", body, JSON_HEADERS)
    assert response.status == 400 and b"Mesos-Stream-Id" in text
    assert (await scheduler.call({"type": "REVIVE"}, stream_id="not-the-stream")).status == 400
    assert (await scheduler.call({"type": "REVIVE"})).status == 202


@pytest.mark.parametrize(
    "body",
    [
        {"type": "ACCEPT", "accept": {"offer_ids": [{"value": "none"}]}},
        {"type": "DECLINE", "decline": {"offer_ids": [{"value": "none"}]}},
        {"type": "KILL", "kill": {"task_id": {"value": "t"}}},
        {"type": "REVIVE"},
        {"type": "SUPPRESS"},
        {"type": "RECONCILE", "reconcile": {}},
        {"type": "MESSAGE", "message": {"agent_id": {"value": "a"}, "executor_id": {"value": "e"}, "data": "aGk="}},
        {"type": "SHUTDOWN", "shutdown": {"agent_id": {"value": "a"}, "executor_id": {"value": "e"}}},
        {"type": "REQUEST", "request": {}},
        {
            "type": "ACKNOWLEDGE",
            "acknowledge": {
                "agent_id": {"value": "a"},
                "task_id": {"value": "t"},
                "uuid": base64.b64encode(bytes(16)).decode(),
            },
        },
    ],
    ids=lambda body: str(body["type"]),
)
async def test_calls_are_answered_202_with_an_empty_body(master: Master, body: dict[str, object]) -> None:
    scheduler = await master.framework()
    response = await scheduler.call(body)
    assert response.status == 202
    assert response.headers["Content-Length"] == "0"


async def test_update_framework_answers_200(master: Master) -> None:
    scheduler = await master.framework()
    info = framework_info("renamed", id={"value": scheduler.framework_id})
    response = await scheduler.call({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}})
    assert response.status == 200
    assert master.state.frameworks[scheduler.framework_id].info.name == "renamed"


@pytest.mark.parametrize("change", [{"user": "bob"}, {"principal": "p"}, {"checkpoint": True}])
async def test_update_framework_may_not_change_user_principal_or_checkpoint(
    master: Master, change: dict[str, object]
) -> None:
    scheduler = await master.framework()
    info = {**framework_info(id={"value": scheduler.framework_id}), **change}
    response = await scheduler.call({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}})
    assert response.status == 400


async def test_update_framework_for_another_id_is_400(master: Master) -> None:
    scheduler = await master.framework()
    info = framework_info(id={"value": "other"})
    response = await scheduler.call({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}})
    assert response.status == 400


# ---- malformed requests ----


async def test_content_type_must_be_present_and_exactly_json(master: Master) -> None:
    body = json.dumps(subscribe_call())
    async with master.session.post(
        master.base + "/api/v1/scheduler", data=body.encode(), skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 400 and b"Content-Type" in await response.read()
    response, _ = await master.post("/api/v1/scheduler", body, {"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 415
    response, _ = await master.post("/api/v1/scheduler", body, {"Content-Type": "application/x-protobuf"})
    assert response.status == 415


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[]",
        json.dumps({"type": "NOT_A_CALL"}),
        json.dumps({"framework_id": {"value": "x"}}),
        json.dumps({"type": "SUBSCRIBE"}),
        json.dumps({"type": "ACCEPT", "framework_id": {"value": "x"}}),
        json.dumps({"type": "KILL", "framework_id": {"value": "x"}}),
        json.dumps({"type": "REVIVE"}),
        json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "no user"}}}),
        json.dumps({"type": 3, "framework_id": {"value": "x"}}),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "unknown-type",
        "no-type",
        "subscribe-without-subscribe",
        "accept-without-accept",
        "kill-without-kill",
        "no-framework-id",
        "missing-required-field",
        "numeric-enum",
    ],
)
async def test_malformed_calls_are_400(master: Master, body: str) -> None:
    response, text = await master.post("/api/v1/scheduler", body, JSON_HEADERS)
    assert response.status == 400, text
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("uuid", [base64.b64encode(bytes(15)).decode(), "not base64!", ""])
async def test_acknowledge_needs_a_16_byte_uuid(master: Master, uuid: str) -> None:
    scheduler = await master.framework()
    ack = {"agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": uuid}
    response = await scheduler.call({"type": "ACKNOWLEDGE", "acknowledge": ack})
    assert response.status == 400


@pytest.mark.parametrize("path", ["/api/v1/scheduler", "/master/api/v1/scheduler"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_only_post_is_allowed(master: Master, path: str, method: str) -> None:
    async with master.session.request(method, master.base + path) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"


async def test_the_master_keeps_serving_after_bad_requests(master: Master) -> None:
    for body in ("{", "[]", json.dumps({"type": "ACCEPT"}), "\xff"):
        await master.post("/api/v1/scheduler", body, JSON_HEADERS)
    await master.post("/api/v1/scheduler", "{}", {})
    scheduler = await master.framework()
    assert scheduler.framework_id in master.state.frameworks


async def test_unknown_call_type_is_not_implemented(master: Master) -> None:
    scheduler = await master.framework()
    response = await scheduler.call({"type": "UNKNOWN"})
    assert response.status == 501


# ---- teardown and failover ----


async def test_teardown_ends_the_stream_and_the_framework_cannot_come_back(master: Master) -> None:
    scheduler = await master.framework(subscribe_call(framework_info(failover_timeout=3600.0)))
    response = await scheduler.call({"type": "TEARDOWN"})
    assert response.status == 202
    await scheduler.log.wait_until_ended()
    assert scheduler.framework_id not in master.state.frameworks
    state = await master.get_json("/master/state")
    assert [f["id"] for f in state["completed_frameworks"]] == [scheduler.framework_id]
    again = await master.subscribe(subscribe_call(framework_id=scheduler.framework_id))
    await again.log.wait_until_ended()
    assert [e["type"] for e in again.log.events] == ["ERROR"]


async def test_a_framework_that_resubscribes_in_time_keeps_going(master: Master) -> None:
    scheduler = await master.framework(subscribe_call(framework_info(failover_timeout=60.0)))
    await scheduler.close()
    framework = master.state.frameworks[scheduler.framework_id]
    await until(lambda: not framework.connected, timeout=5.0)
    assert framework.failover_deadline is not None
    again = await master.framework(
        subscribe_call(framework_info(failover_timeout=60.0), framework_id=scheduler.framework_id)
    )
    assert again.framework_id == scheduler.framework_id
    assert framework.connected and framework.failover_deadline is None


async def test_a_disconnected_framework_is_removed_when_its_failover_timeout_runs_out(master: Master) -> None:
    scheduler = await master.framework(subscribe_call(framework_info(failover_timeout=0.3)))
    await scheduler.close()
    await until(lambda: scheduler.framework_id not in master.state.frameworks, timeout=5.0)
    assert [f.id for f in master.state.completed_frameworks] == [scheduler.framework_id]


# Pass-through sub-messages (health_check, discovery, offer_filters, requests, ...) must accept real values.
async def test_request_with_requests_is_accepted(master: Master) -> None:
    scheduler = await master.framework()
    response = await scheduler.call({"type": "REQUEST", "request": {"requests": [{"resources": []}]}})
    assert response.status == 202


async def test_subscribe_with_offer_filters_is_accepted(master: Master) -> None:
    info = framework_info(offer_filters={"*": {"min_allocatable_resources": {}}})
    scheduler = await master.subscribe(subscribe_call(info))
    assert scheduler.response.status == 200


async def test_invalid_utf8_in_a_string_is_400(master: Master) -> None:
    response, _ = await master.post("/api/v1/scheduler", b'{"type":"\xff"}', JSON_HEADERS)
    assert response.status == 400
