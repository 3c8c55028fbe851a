"""The master's asyncio shell: owns the core state, carries out its effects, runs its timers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import msgspec

from butte.core.errors import Unavailable
from butte.edge import Outbox
from butte.master import agents, frameworks, offers, registry_gc, unreachable
from butte.master.effects import (
    Allocate,
    CloseAgentStream,
    CloseFrameworkStream,
    Effect,
    SendToAgent,
    SendToFramework,
)
from butte.master.health import AgentHealth
from butte.master.registry import Registry
from butte.master.state import HEARTBEAT_INTERVAL_S, MasterState
from butte.wire.agent_link import AgentEvent
from butte.wire.base import encode
from butte.wire.scheduler import Error, Event

log = logging.getLogger("butte.master")

_TICK_S = 0.1
_HEARTBEAT = encode(Event(type="HEARTBEAT"))


class MasterService:
    """One master: the core state plus the streams, timers and registry around it."""

    def __init__(
        self,
        state: MasterState,
        registry: Registry,
        *,
        allocation_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        agent_health: AgentHealth | None = None,
    ) -> None:
        self.state = state
        self.registry = registry
        self.clock = clock
        self.allocation_interval_s = allocation_interval_s
        config = state.config
        self.agent_health = agent_health or AgentHealth(config.agent_ping_timeout_s, config.max_agent_ping_timeouts)
        self.elected_time = clock()
        self.framework_streams: dict[str, Outbox] = {}  # by stream id
        self.agent_streams: dict[str, Outbox] = {}  # by stream id
        self._allocation_pending = False
        self._timers: list[asyncio.Task[None]] = []
        # Leadership (butte/master/leadership): a non-leader answers 307/503; epoch fences agents.
        self.leading = True
        self.epoch: int | None = None
        self.leader_info: dict[str, object] | None = None  # the leader's MasterInfo JSON when another leads
        self.recovered_agents: set[str] = set()  # admitted in the registry when this master was elected

    def now(self) -> float:
        """The time the core is told."""
        return self.clock()

    # ---- effects ----

    def apply(self, effects: Iterable[Effect]) -> None:
        """Carry out the core's effects in order."""
        for effect in effects:
            if isinstance(effect, SendToFramework):
                self._send_to_framework(effect.framework_id, encode(effect.event))
            elif isinstance(effect, SendToAgent):
                self._send_to_agent(effect.agent_id, effect.event)
            elif isinstance(effect, CloseFrameworkStream):
                self._close_framework_stream(effect)
            elif isinstance(effect, CloseAgentStream):
                outbox = self.agent_streams.pop(effect.stream_id, None)
                if outbox is not None:
                    outbox.close()
            elif isinstance(effect, Allocate):
                self.request_allocation()

    def _send_to_framework(self, framework_id: str, record: bytes) -> None:
        framework = self.state.frameworks.get(framework_id)
        if framework is None or not framework.connected:
            return
        outbox = self.framework_streams.get(framework.stream_id)
        if outbox is not None:
            outbox.put(record)

    def _send_to_agent(self, agent_id: str, event: AgentEvent) -> None:
        agent = self.state.agents.get(agent_id)
        if agent is None or not agent.active:
            return
        outbox = self.agent_streams.get(agent.stream_id)
        if outbox is not None:
            outbox.put(encode(self.stamp(event)))

    def stamp(self, event: AgentEvent) -> AgentEvent:
        """The event with this leader's epoch, so agents can ignore a deposed leader."""
        return event if self.epoch is None else msgspec.structs.replace(event, epoch=self.epoch)

    def _close_framework_stream(self, effect: CloseFrameworkStream) -> None:
        outbox = self.framework_streams.pop(effect.stream_id, None)
        if outbox is None:
            return
        if effect.error is not None:
            outbox.put(encode(Event(type="ERROR", error=Error(message=effect.error))))
        outbox.close()

    # ---- allocation ----

    def request_allocation(self) -> None:
        """Allocate soon; bursts of events coalesce into one pass (Mesos batches the same way)."""
        if self._allocation_pending:
            return
        self._allocation_pending = True
        asyncio.get_running_loop().call_soon(self._allocate_now)

    def _allocate_now(self) -> None:
        self._allocation_pending = False
        now = self.now()
        allocations = self.state.allocator.allocate(now)
        if allocations:
            self.apply(offers.make_offers(self.state, allocations, now))

    # ---- streams ----

    def attach_framework_stream(self, stream_id: str) -> Outbox:
        """A new subscription stream; events for its framework go here once the core names it current."""
        outbox = Outbox()
        self.framework_streams[stream_id] = outbox
        return outbox

    def framework_stream_closed(self, framework_id: str, stream_id: str) -> None:
        """The scheduler's connection ended (or was replaced)."""
        self.framework_streams.pop(stream_id, None)
        effects = frameworks.disconnect(self.state, framework_id, stream_id, self.now())
        if effects or self.state.frameworks.get(framework_id) is not None:
            log.info("framework %s disconnected (stream %s)", framework_id, stream_id)
        self.apply(effects)

    def attach_agent_stream(self, stream_id: str) -> Outbox:
        """A new agent link stream."""
        outbox = Outbox()
        self.agent_streams[stream_id] = outbox
        return outbox

    def agent_stream_closed(self, agent_id: str, stream_id: str) -> None:
        """The agent's link ended."""
        self.agent_streams.pop(stream_id, None)
        effects = agents.disconnect(self.state, agent_id, stream_id, self.now())
        agent = self.state.agents.get(agent_id)
        if agent is not None and not agent.active:
            log.info("agent %s at %s:%d disconnected", agent_id, agent.ip, agent.port)
        self.apply(effects)

    # ---- timers ----

    def start(self) -> None:
        """Start the periodic work: allocation batches, heartbeats, pings, timeouts."""
        self._timers = [
            asyncio.create_task(self._every(self.allocation_interval_s, self._allocate_now)),
            asyncio.create_task(self._every(HEARTBEAT_INTERVAL_S, self._heartbeat)),
            asyncio.create_task(self._every(self.state.config.agent_ping_timeout_s, self._ping_agents)),
            asyncio.create_task(self._every(_TICK_S, self._tick)),
            asyncio.create_task(self._every(self.state.config.registry_gc_interval_s, self._registry_gc)),
        ]

    def stop_timers(self) -> list[asyncio.Task[None]]:
        """Cancel the periodic work at once (a deposed leader must stop acting); the cancelled tasks."""
        timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        return timers

    async def stop(self) -> None:
        """Stop the timers and end every stream."""
        for timer in self._timers:
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        for outbox in [*self.framework_streams.values(), *self.agent_streams.values()]:
            outbox.close()

    async def _every(self, interval_s: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                action()
            except Exception:  # a timer must survive a bug in one pass; the log says what broke
                log.exception("periodic %s failed", getattr(action, "__name__", action))

    def _heartbeat(self) -> None:
        for framework in self.state.frameworks.values():
            if framework.connected:
                self._send_to_framework(framework.id, _HEARTBEAT)

    def _ping_agents(self) -> None:
        ping = AgentEvent(type="PING")
        for agent in self.state.agents.values():
            self._send_to_agent(agent.id, ping)

    def _tick(self) -> None:
        now = self.now()
        self.apply(frameworks.expire_failovers(self.state, now))
        self.apply(offers.expire_offers(self.state, now))
        self._mark_silent_agents(now)

    def _mark_silent_agents(self, now: float) -> None:
        # Missed pongs, not a broken stream, make an agent unreachable (Mesos's SlaveObserver).
        for agent_id in self.agent_health.to_mark_unreachable(unreachable.pong_times(self.state), now):
            try:
                self.registry.mark(agent_id, "unreachable")  # written before the master acts on it
            except Unavailable as exc:
                # Not recorded, so not acted on: a deposed leader (NotLeader) must not tell frameworks TASK_LOST
                # for an agent the new leader still has; its contender makes it step down.
                log.error("agent %s missed its pings but was not marked unreachable: %s", agent_id, exc)
                return
            log.warning("agent %s missed %d pings; marked unreachable", agent_id, self.agent_health.max_ping_timeouts)
            self.apply(unreachable.mark_unreachable(self.state, agent_id, now))

    def _registry_gc(self) -> None:
        self.collect_registry_garbage()

    def collect_registry_garbage(self) -> list[str]:
        """One registry GC pass: prune agents marked unreachable or gone too long ago (or too many), then forget
        them here; the ids pruned. Mesos's ``doRegistryGc``: the registry write comes first, and an agent that
        reregistered since the selection is no longer marked, so both the registry and the books keep it.
        """
        config = self.state.config
        chosen = registry_gc.select_prunable(
            self.registry.marked_agents(),
            self.now(),
            config.registry_max_agent_age_s,
            config.registry_max_agent_count,
            unknown_time=self.elected_time,  # marks written before they carried a time age from the election
        )
        if not chosen:
            return []
        try:
            pruned = self.registry.prune(chosen)
        except Unavailable as exc:
            log.error("registry GC of %d agents not written, nothing forgotten: %s", len(chosen), exc)
            return []
        unreachable.forget_pruned(self.state, pruned)
        if pruned:
            log.info("registry GC forgot %d unreachable or gone agents: %s", len(pruned), ", ".join(pruned))
        return pruned
