"""``POST /api/v1/agent``: the internal agent API (DESIGN.md §7)."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from butte.core.errors import ValidationError
from butte.edge import content_type_error, empty, error_response, open_stream
from butte.master import agents, tasks
from butte.master.api.common import SERVICE
from butte.master.effects import Effect
from butte.master.service import MasterService
from butte.wire.agent_link import AgentCall, AgentEvent, ShutdownAgent
from butte.wire.base import decode, encode
from butte.wire.recordio import frame
from butte.wire.resources import resources_from_wire

log = logging.getLogger("butte.master.agents")


async def handle(request: web.Request) -> web.StreamResponse:
    """Entry point for every call an agent makes."""
    service: MasterService = request.app[SERVICE]
    if refused := content_type_error(request.headers.get("Content-Type")):
        return refused
    try:
        call = decode(await request.read(), AgentCall)
        if call.type in ("REGISTER", "REREGISTER"):
            return await _connect(request, service, call)
        effects = _on_call(service, call, request.headers.get("Mesos-Stream-Id"))
    except ValidationError as exc:
        return error_response(exc, "Failed to validate agent call: ")
    service.apply(effects)
    return empty(202)


def _on_call(service: MasterService, call: AgentCall, stream_id: str | None) -> list[Effect]:
    if call.agent_id is None:
        raise ValidationError("agent_id", "Expecting 'agent_id' to be present")
    agent = service.state.agents.get(call.agent_id.value)
    if agent is None or not stream_id or agent.stream_id != stream_id:
        raise ValidationError("Mesos-Stream-Id", "Not the agent's current stream")
    now = service.now()
    agent.last_pong = now
    if call.type == "UPDATE":
        effects: list[Effect] = []
        for update in call.updates:
            effects += tasks.on_agent_update(service.state, agent.id, update.framework_id.value, update.status, now)
        return effects
    if call.type == "EXECUTOR_EXITED" and call.executor_exited is not None:
        exited = call.executor_exited
        return tasks.executor_exited(
            service.state, agent.id, exited.framework_id.value, exited.executor_id.value, exited.status
        )
    if call.type == "MESSAGE" and call.message is not None:
        message = call.message
        return tasks.executor_message(
            service.state, agent.id, message.framework_id.value, message.executor_id.value, message.data
        )
    if call.type == "PONG":
        return []
    raise ValidationError("type", f"Expecting '{call.type.lower()}' to be present")


async def _connect(request: web.Request, service: MasterService, call: AgentCall) -> web.StreamResponse:
    _validate_resources(call)  # once the stream is open an error can no longer be a 400
    stream_id = str(uuid.uuid4())
    peer_ip = _peer_ip(request)
    refusal = _refusal(service, call)
    response = await open_stream(request, {"Mesos-Stream-Id": stream_id})
    if refusal is not None:
        refused = AgentEvent(type="SHUTDOWN", shutdown=ShutdownAgent(message=refusal))
        await response.write(frame(encode(service.stamp(refused))))
        return response
    outbox = service.attach_agent_stream(stream_id)
    agent_id = _admit(service, call, peer_ip, stream_id)
    try:
        await outbox.drain_to(response)
    except ConnectionResetError:
        pass
    finally:
        service.agent_stream_closed(agent_id, stream_id)
    return response


def _validate_resources(call: AgentCall) -> None:
    """Check the agent's, its tasks' and its executors' resources before anything is admitted.

    Raises:
        ValidationError: a resource is malformed; names its path.
    """
    message = call.register or call.reregister
    if message is None:
        return
    resources_from_wire(message.agent_info.resources, field="agent_info.resources")
    if call.reregister is not None:
        for index, task in enumerate(call.reregister.tasks):
            resources_from_wire(task.resources, field=f"reregister.tasks[{index}].resources")
        for index, record in enumerate(call.reregister.executors):
            resources_from_wire(record.executor_info.resources, field=f"reregister.executors[{index}].resources")


def _refusal(service: MasterService, call: AgentCall) -> str | None:
    if call.type == "REGISTER" and call.register is None:
        return "Expecting 'register' to be present"
    if call.type == "REREGISTER":
        if call.reregister is None or call.reregister.agent_info.id is None:
            return "Expecting 'reregister.agent_info.id' to be present"
        if service.registry.state_of(call.reregister.agent_info.id.value) == "gone":
            return "Agent has been marked gone"
    return None


def _admit(service: MasterService, call: AgentCall, ip: str, stream_id: str) -> str:
    now = service.now()
    if call.register is not None and call.type == "REGISTER":
        info = call.register.agent_info
        agent_id = service.state.new_agent_id()
        info.id = None
        service.registry.admit(agent_id, encode(info))  # written before the master acts on it
        log.info("admitted agent %s at %s:%d (%s)", agent_id, ip, info.port, info.hostname)
        service.apply(agents.admit(service.state, agent_id, info, ip, stream_id, now))
        return agent_id
    assert call.reregister is not None and call.reregister.agent_info.id is not None
    agent_id = call.reregister.agent_info.id.value
    service.registry.admit(agent_id, encode(call.reregister.agent_info))
    log.info(
        "agent %s at %s:%d reregistered with %d tasks",
        agent_id,
        ip,
        call.reregister.agent_info.port,
        len(call.reregister.tasks),
    )
    service.apply(agents.readmit(service.state, call.reregister, ip, stream_id, now))
    return agent_id


def _peer_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "127.0.0.1"
