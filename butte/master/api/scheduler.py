"""``POST /api/v1/scheduler``: the Mesos v1 scheduler API, status codes as in ``mesos-v1-api.md`` §2.1."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from aiohttp import web

from butte.core.errors import ButteError, NotFound, ValidationError
from butte.edge import accepts_json, content_type_error, empty, error_response, open_stream
from butte.master import frameworks, launch, offers, tasks
from butte.master.api.common import SERVICE
from butte.master.effects import Effect
from butte.master.model import Framework
from butte.master.service import MasterService
from butte.wire.base import decode, encode
from butte.wire.recordio import frame
from butte.wire.scheduler import Call, Error, Event, validate_call

log = logging.getLogger("butte.master.scheduler")

# Mesos answers "Framework cannot be found" with 400, not 404.
_OVERRIDES: dict[type[ButteError], int] = {NotFound: 400}

Handler = Callable[[MasterService, Framework, Call, float], list[Effect]]


async def handle(request: web.Request) -> web.StreamResponse:
    """Entry point for every scheduler call."""
    service: MasterService = request.app[SERVICE]
    if refused := content_type_error(request.headers.get("Content-Type")):
        return refused
    try:
        call = decode(await request.read(), Call)
        validate_call(call)
    except ValidationError as exc:
        return error_response(exc, "Failed to validate scheduler::Call: ")
    if call.type == "SUBSCRIBE":
        return await _subscribe(request, service, call)
    if call.type == "UNKNOWN":
        return web.Response(status=501, text="Received an unexpected 'UNKNOWN' call")
    assert call.framework_id is not None and call.type is not None
    try:
        framework = frameworks.require_subscribed(
            service.state, call.framework_id.value, request.headers.get("Mesos-Stream-Id")
        )
        effects = _HANDLERS[call.type](service, framework, call, service.now())
    except ButteError as exc:
        return error_response(exc, overrides=_OVERRIDES)
    service.apply(effects)
    return empty(200 if call.type == "UPDATE_FRAMEWORK" else 202)


async def _subscribe(request: web.Request, service: MasterService, call: Call) -> web.StreamResponse:
    if not accepts_json(request.headers.get("Accept")):
        return web.Response(status=406, text="Expecting 'Accept' to allow application/json")
    if "Mesos-Stream-Id" in request.headers:
        return web.Response(status=400, text="Subscribe calls should not include the 'Mesos-Stream-Id' header")
    assert call.subscribe is not None
    stream_id = str(uuid.uuid4())
    response = await open_stream(request, {"Mesos-Stream-Id": stream_id})
    try:
        framework_id, effects = frameworks.subscribe(service.state, call.subscribe, stream_id, service.now())
    except ValidationError as exc:
        # Mesos still answers 200: the stream carries one ERROR event and ends.
        error = Event(type="ERROR", error=Error(message=exc.msg))
        await response.write(frame(encode(error)))
        return response
    outbox = service.attach_framework_stream(stream_id)
    log.info(
        "framework %s (%s) subscribed on stream %s",
        framework_id,
        call.subscribe.framework_info.name,
        stream_id,
    )
    service.apply(effects)
    try:
        await outbox.drain_to(response)
    except ConnectionResetError:
        pass
    finally:
        service.framework_stream_closed(framework_id, stream_id)
    return response


def _teardown(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    log.info("framework %s tore itself down", framework.id)
    return frameworks.teardown(service.state, framework, now)


def _accept(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.accept is not None
    return launch.accept(service.state, framework, call.accept, now)


def _decline(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.decline is not None
    ids = [o.value for o in call.decline.offer_ids]
    return offers.decline(service.state, framework, ids, call.decline.filters, now)


def _revive(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    return frameworks.revive(service.state, framework, call.revive.roles if call.revive else None)


def _suppress(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    return frameworks.suppress(service.state, framework, call.suppress.roles if call.suppress else None)


def _kill(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.kill is not None
    kill = call.kill
    agent_id = kill.agent_id.value if kill.agent_id else None
    return tasks.kill(service.state, framework, kill.task_id.value, kill.kill_policy, now, agent_id)


def _shutdown(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.shutdown is not None
    return tasks.shutdown_executor(framework, call.shutdown.agent_id.value, call.shutdown.executor_id.value)


def _acknowledge(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    ack = call.acknowledge
    assert ack is not None
    return tasks.acknowledge(service.state, framework, ack.agent_id.value, ack.task_id.value, ack.uuid, now)


def _reconcile(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.reconcile is not None
    asked = [(t.task_id.value, t.agent_id.value if t.agent_id else None) for t in call.reconcile.tasks]
    # Mesos gives no answer for an unknown task on an agent recovered from the registry that has not
    # reregistered yet: after a failover the task may well be running there.
    waiting = service.recovered_agents - service.state.agents.keys()
    answerable = [
        (task_id, agent_id)
        for task_id, agent_id in asked
        if not _on_recovered_agent(framework, task_id, agent_id, waiting)
    ]
    if asked and not answerable:
        return []
    return tasks.reconcile(service.state, framework, answerable, now)


def _on_recovered_agent(framework: Framework, task_id: str, agent_id: str | None, waiting: set[str]) -> bool:
    return task_id not in framework.tasks and agent_id is not None and agent_id in waiting


def _message(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    message = call.message
    assert message is not None
    return tasks.framework_message(framework, message.agent_id.value, message.executor_id.value, message.data)


def _update_framework(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    assert call.update_framework is not None
    return frameworks.update_framework(service.state, framework, call.update_framework, now)


def _ignored(service: MasterService, framework: Framework, call: Call, now: float) -> list[Effect]:
    # Inverse offers, operations and REQUEST: accepted and ignored, as Mesos's built-in allocator does.
    return []


_HANDLERS: dict[str, Handler] = {
    "TEARDOWN": _teardown,
    "ACCEPT": _accept,
    "DECLINE": _decline,
    "ACCEPT_INVERSE_OFFERS": _ignored,
    "DECLINE_INVERSE_OFFERS": _ignored,
    "REVIVE": _revive,
    "SUPPRESS": _suppress,
    "KILL": _kill,
    "SHUTDOWN": _shutdown,
    "ACKNOWLEDGE": _acknowledge,
    "ACKNOWLEDGE_OPERATION_STATUS": _ignored,
    "RECONCILE": _reconcile,
    "RECONCILE_OPERATIONS": _ignored,
    "MESSAGE": _message,
    "REQUEST": _ignored,
    "UPDATE_FRAMEWORK": _update_framework,
}
