"""Framework lifecycle: subscribe, failover, disconnect, teardown, update, suppress and revive (pure)."""

from __future__ import annotations

import re

from butte.core.errors import Forbidden, NotFound, ValidationError
from butte.master import offers
from butte.master.effects import Allocate, CloseFrameworkStream, Effect, SendToAgent, SendToFramework
from butte.master.model import Framework, FrameworkLink, framework_roles
from butte.master.state import HEARTBEAT_INTERVAL_S, MasterState, id_of
from butte.wire import mesos
from butte.wire.agent_link import AgentEvent, FrameworkRef, UpdateFrameworkInfo
from butte.wire.mesos import TERMINAL_STATES
from butte.wire.scheduler import Event, Subscribe, Subscribed, UpdateFramework

_BAD_ROLE_CHARS = re.compile(r"[\s/\\]")


def subscribe(state: MasterState, call: Subscribe, stream_id: str, now: float) -> tuple[str, list[Effect]]:
    """Admit a new framework or fail one over to a new stream; returns its id and the effects.

    Raises:
        ValidationError: the FrameworkInfo is invalid (roles, suppressed roles) or was removed before.
    """
    info = call.framework_info
    suppressed = frozenset(call.suppressed_roles)
    validate_framework_info(state, info, suppressed)
    if info.id is None:
        return _add_framework(state, info, suppressed, stream_id, now)
    framework_id = info.id.value
    if framework_id in state.removed_framework_ids:
        raise ValidationError("framework_id", "Framework has been removed")
    if framework_id not in state.frameworks:
        return _add_framework(state, info, suppressed, stream_id, now)
    return _fail_over(state, state.frameworks[framework_id], info, suppressed, stream_id, now)


def validate_framework_info(state: MasterState, info: mesos.FrameworkInfo, suppressed: frozenset[str]) -> None:
    """Mesos's FrameworkInfo checks on subscribe and update.

    Raises:
        ValidationError: roles are malformed, not whitelisted, or suppressed roles are not subscribed.
    """
    multi_role = any(c.type == "MULTI_ROLE" for c in info.capabilities)
    if info.roles and not multi_role:
        raise ValidationError("framework_info.roles", "'roles' requires the MULTI_ROLE capability")
    if multi_role and info.role is not None:
        raise ValidationError("framework_info.role", "'role' cannot be set with the MULTI_ROLE capability")
    roles = framework_roles(info)
    for role in roles:
        _validate_role(role)
        if not state.role_allowed(role):
            raise ValidationError("framework_info.roles", f"Role '{role}' is not present in the master's --roles")
    if not suppressed <= roles:
        raise ValidationError("suppressed_roles", "Suppressed roles must be a subset of the framework's roles")


def _validate_role(role: str) -> None:
    if role in ("", ".", "..") or role.startswith("-") or _BAD_ROLE_CHARS.search(role):
        raise ValidationError("framework_info.roles", f"Invalid role '{role}'")


def _add_framework(
    state: MasterState, info: mesos.FrameworkInfo, suppressed: frozenset[str], stream_id: str, now: float
) -> tuple[str, list[Effect]]:
    framework_id = info.id.value if info.id else state.new_framework_id()
    info.id = id_of(framework_id)
    framework = Framework(
        id=framework_id, info=info, registered_time=now, stream_id=stream_id, suppressed_roles=suppressed
    )
    state.frameworks[framework_id] = framework
    state.allocator.add_framework(framework_id, framework.roles, suppressed, now)
    return framework_id, [*_subscribed(state, framework), Allocate()]


def _fail_over(
    state: MasterState,
    framework: Framework,
    info: mesos.FrameworkInfo,
    suppressed: frozenset[str],
    stream_id: str,
    now: float,
) -> tuple[str, list[Effect]]:
    effects: list[Effect] = []
    if framework.link is FrameworkLink.CONNECTED:
        # Only one subscription per framework: the old stream learns it was replaced.
        effects.append(CloseFrameworkStream(framework.id, framework.stream_id, "Framework failed over"))
        effects += offers.rescind_framework_offers(state, framework, now, notify=False)
    was_recovered = framework.link is FrameworkLink.RECOVERED
    # Mesos ignores changes of user and checkpoint on resubscription, unless the agents that reported the
    # framework did not know its FrameworkInfo (a placeholder without a user): then the subscriber's info is all.
    if not (was_recovered and not framework.info.user):
        info.user, info.checkpoint = framework.info.user, framework.info.checkpoint
    _apply_info(state, framework, info, suppressed)
    framework.link = FrameworkLink.CONNECTED
    framework.stream_id = stream_id
    framework.failover_deadline = None
    framework.reregistered_time = now
    if was_recovered:
        framework.registered_time = now
    state.allocator.activate_framework(framework.id)
    effects += _subscribed(state, framework)
    effects.append(Allocate())
    return framework.id, effects


def _subscribed(state: MasterState, framework: Framework) -> list[Effect]:
    subscribed = Subscribed(
        framework_id=id_of(framework.id),
        heartbeat_interval_seconds=HEARTBEAT_INTERVAL_S,
        master_info=state.master_info,
    )
    return [
        SendToFramework(framework.id, Event(type="SUBSCRIBED", subscribed=subscribed)),
        # Mesos sends the first HEARTBEAT right after SUBSCRIBED.
        SendToFramework(framework.id, Event(type="HEARTBEAT")),
    ]


def _apply_info(
    state: MasterState, framework: Framework, info: mesos.FrameworkInfo, suppressed: frozenset[str]
) -> None:
    framework.info = info
    framework.suppressed_roles = suppressed
    state.allocator.update_framework(framework.id, framework.roles, suppressed)


def require_subscribed(state: MasterState, framework_id: str, stream_id: str | None) -> Framework:
    """The framework a call names, checked as Mesos checks it (400, 403, 400).

    Raises:
        NotFound: no such framework ("Framework cannot be found"; Mesos answers 400).
        Forbidden: the framework is not connected.
        ValidationError: the Mesos-Stream-Id header is missing or not the current stream.
    """
    framework = state.frameworks.get(framework_id)
    if framework is None:
        raise NotFound("Framework cannot be found")
    if not framework.connected:
        raise Forbidden("Framework is not subscribed")
    if not stream_id:
        raise ValidationError("Mesos-Stream-Id", "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
    if stream_id != framework.stream_id:
        raise ValidationError(
            "Mesos-Stream-Id",
            f"The stream ID '{stream_id}' included in this request didn't match the stream ID "
            f"currently associated with framework ID {framework_id}",
        )
    return framework


def disconnect(state: MasterState, framework_id: str, stream_id: str, now: float) -> list[Effect]:
    """The framework's stream broke: keep its tasks for ``failover_timeout``, take back its offers."""
    framework = state.frameworks.get(framework_id)
    if framework is None or framework.stream_id != stream_id or not framework.connected:
        return []
    framework.link = FrameworkLink.DISCONNECTED
    framework.unregistered_time = now
    framework.failover_deadline = now + max(0.0, framework.info.failover_timeout)
    state.allocator.deactivate_framework(framework_id)
    return offers.rescind_framework_offers(state, framework, now, notify=False)


def expire_failovers(state: MasterState, now: float) -> list[Effect]:
    """Remove frameworks whose failover timeout ran out (their tasks are killed)."""
    effects: list[Effect] = []
    expired = [
        f
        for f in state.frameworks.values()
        if f.link is FrameworkLink.DISCONNECTED and f.failover_deadline is not None and f.failover_deadline <= now
    ]
    for framework in expired:
        effects += remove_framework(state, framework, now)
    return effects


def teardown(state: MasterState, framework: Framework, now: float) -> list[Effect]:
    """TEARDOWN: the framework is done; kill its tasks and close its stream."""
    effects: list[Effect] = [CloseFrameworkStream(framework.id, framework.stream_id, None)]
    return effects + remove_framework(state, framework, now)


def remove_framework(state: MasterState, framework: Framework, now: float) -> list[Effect]:
    """Forget a framework: shut it down on every agent, free its resources, keep it as completed."""
    from butte.master import tasks  # tasks imports this module for subscription checks

    effects = offers.rescind_framework_offers(state, framework, now, notify=False)
    agent_ids = {t.agent_id for t in framework.tasks.values()} | {a for a, _ in framework.executors}
    for agent_id in sorted(agent_ids):
        ref = FrameworkRef(framework_id=id_of(framework.id))
        effects.append(SendToAgent(agent_id, AgentEvent(type="SHUTDOWN_FRAMEWORK", shutdown_framework=ref)))
    for task in list(framework.tasks.values()):
        # As Mesos's removeFramework: only tasks still running become TASK_KILLED; ended ones keep their state.
        tasks.forget_task(state, task, task.state if task.state in TERMINAL_STATES else "TASK_KILLED", now)
    for agent_id, executor_id in list(framework.executors):
        tasks.forget_executor(state, framework, agent_id, executor_id)
    state.allocator.remove_framework(framework.id)
    del state.frameworks[framework.id]
    framework.unregistered_time = framework.unregistered_time or now
    framework.link = FrameworkLink.DISCONNECTED  # a completed framework is neither active nor connected
    state.completed_frameworks.append(framework)
    state.removed_framework_ids.add(framework.id)
    return effects


def update_framework(state: MasterState, framework: Framework, call: UpdateFramework, now: float) -> list[Effect]:
    """UPDATE_FRAMEWORK: new roles, capabilities, name, ...; never user, principal or checkpoint.

    Raises:
        ValidationError: the update changes an immutable field or is otherwise invalid.
    """
    info = call.framework_info
    for name in ("user", "principal", "checkpoint"):
        if getattr(info, name) != getattr(framework.info, name):
            raise ValidationError(f"update_framework.framework_info.{name}", f"Updating '{name}' is unsupported")
    suppressed = frozenset(call.suppressed_roles)
    validate_framework_info(state, info, suppressed)
    _apply_info(state, framework, info, suppressed)
    # Mesos rescinds the offers made for roles the framework has left: they could not be used any more.
    effects: list[Effect] = []
    for offer_id in sorted(framework.offers):
        if state.offers[offer_id].role not in framework.roles:
            effects += offers.rescind(state, state.offers[offer_id], now)
    ref = UpdateFrameworkInfo(framework_info=info)
    agent_ids = sorted({t.agent_id for t in framework.tasks.values()})
    effects += [SendToAgent(a, AgentEvent(type="UPDATE_FRAMEWORK", update_framework=ref)) for a in agent_ids]
    return [*effects, Allocate()]


def suppress(state: MasterState, framework: Framework, roles: list[str] | None) -> list[Effect]:
    """SUPPRESS: no more offers for these roles (all when empty) until REVIVE."""
    chosen = frozenset(roles) if roles else framework.roles
    framework.suppressed_roles |= chosen & framework.roles
    state.allocator.suppress(framework.id, chosen & framework.roles)
    return []


def revive(state: MasterState, framework: Framework, roles: list[str] | None) -> list[Effect]:
    """REVIVE: clear filters and unsuppress these roles (all when empty), then allocate."""
    chosen = frozenset(roles) if roles else framework.roles
    framework.suppressed_roles -= chosen
    state.allocator.revive(framework.id, chosen & framework.roles)
    return [Allocate()]
