"""What a master does when its contender says it gained or lost the lead.

Gaining: a fresh core state (Mesos rebuilds it from agent reregistration and framework resubscription),
weights from the registry, the epoch for fencing, then the timers; agents admitted in the registry that do
not reregister within ``--agent_reregister_timeout`` are marked unreachable (unless more than
``--recovery_agent_removal_limit`` of them are missing, as in Mesos). Losing: stop acting at once — timers
cancelled, every framework and agent stream closed — and forget the state, which is stale from now on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import final

import msgspec

from butte.core.errors import Unavailable
from butte.master import unreachable
from butte.master.leadership import LeaderView
from butte.master.service import MasterService
from butte.master.state import MasterState
from butte.wire import mesos

log = logging.getLogger("butte.master")


@final
class MasterRole:
    """Applies :class:`LeaderView` changes to one :class:`MasterService`; the contender's listener."""

    def __init__(
        self,
        service: MasterService,
        fresh_state: Callable[[], MasterState],
        *,
        configured_weights: dict[str, float],
        agent_reregister_timeout_s: float = 600.0,
        recovery_agent_removal_limit: float = 1.0,
    ) -> None:
        self.service = service
        self._fresh_state = fresh_state
        self._configured_weights = configured_weights
        self._reregister_timeout_s = agent_reregister_timeout_s
        self._removal_limit = recovery_agent_removal_limit
        self._deadline: asyncio.TimerHandle | None = None
        self._registered_infos: dict[str, dict[str, object]] = {}  # AgentInfo JSON by id, read when elected
        self._cancelled: list[asyncio.Task[None]] = []
        self.elections = 0
        service.leading = False

    def on_view(self, view: LeaderView) -> None:
        """Called on the loop for every view the contender reports (repeats are harmless)."""
        self.service.leader_info = None if view.leading else view.leader_info
        if view.leading and not self.service.leading:
            self._lead(view.epoch)
        elif view.leading and view.epoch != self.service.epoch:
            # Our znode vanished and its replacement leads again: a new term, whose registry fence is the new
            # znode, so the old term's state and timers must not go on under it.
            self._step_down()
            self._lead(view.epoch)
        elif not view.leading and self.service.leading:
            self._step_down()

    def _replace_state(self) -> None:
        """A fresh core state that goes on numbering ids where the stale one stopped (no id is reused)."""
        previous = self.service.state
        self.service.state = self._fresh_state()
        self.service.state.continue_numbering(previous)

    def _lead(self, epoch: int | None) -> None:
        service = self.service
        self._replace_state()
        weights = {**service.registry.weights(), **self._configured_weights}
        service.state.allocator.update_weights(weights)
        service.epoch = epoch
        service.elected_time = service.now()
        service.leading = True
        self.elections += 1
        service.start()
        log.info("elected leading master with epoch %s", epoch)
        registered = service.registry.agents()
        recovered = {agent_id for agent_id, (state, _) in registered.items() if state == "admitted"}
        service.recovered_agents = recovered
        self._registered_infos = {agent_id: info for agent_id, (_, info) in registered.items()}
        self._recall_unreachable(registered)
        if recovered:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._reregister_timeout_s, self._expire_recovered, recovered)

    def _recall_unreachable(self, registered: dict[str, tuple[str, dict[str, object]]]) -> None:
        """Book the agents the registry has as unreachable, so that their comeback is treated as one.

        The previous leader may have told frameworks TASK_LOST for their tasks: those must be killed when the
        agent reregisters with us, and reconciliation must answer for them as for any unreachable agent.
        """
        now = self.service.now()
        for agent_id, (state, _) in sorted(registered.items()):
            info = self._agent_info(agent_id) if state == "unreachable" else None
            if info is not None:
                unreachable.recall_unreachable(self.service.state, agent_id, info, now)

    def _agent_info(self, agent_id: str) -> mesos.AgentInfo | None:
        """The AgentInfo the registry held for the agent at election time, or None if it does not parse."""
        try:
            return msgspec.convert(self._registered_infos.get(agent_id), mesos.AgentInfo)
        except msgspec.ValidationError as exc:
            log.error("registry entry of agent %s does not parse: %s", agent_id, exc)
            return None

    def _expire_recovered(self, recovered: set[str]) -> None:
        """Mark the recovered agents that did not reregister in time unreachable, unless too many are missing."""
        service = self.service
        missing = sorted(recovered - set(service.state.agents))
        if not service.leading or not missing:
            return
        if len(missing) / len(recovered) > self._removal_limit:
            # Mesos fails over rather than remove them: a mass partition must not look like mass death.
            log.error(
                "%d of %d recovered agents did not reregister, above --recovery_agent_removal_limit %.0f%%;"
                " not marking them unreachable",
                len(missing),
                len(recovered),
                self._removal_limit * 100,
            )
            return
        service.recovered_agents = set()  # no longer waiting: reconciliation answers for them from now on
        now = service.now()
        for agent_id in missing:
            try:
                service.registry.mark(agent_id, "unreachable")  # written before the master acts on it
            except Unavailable as exc:
                # Not recorded, so not acted on: a deposed leader (NotLeader) steps down through its contender.
                log.error("recovered agent %s not marked unreachable: %s", agent_id, exc)
                return
            log.warning(
                "agent %s did not reregister within %.0f s; marked unreachable", agent_id, self._reregister_timeout_s
            )
            # The new leader knows none of its tasks: book the agent as unreachable so that reconciliation
            # answers for them and its comeback kills what frameworks may have replaced (Mesos's slaveLost).
            info = self._agent_info(agent_id)
            if info is not None:
                service.apply(unreachable.mark_recovered_unreachable(service.state, agent_id, info, now))

    def _step_down(self) -> None:
        service = self.service
        service.leading = False
        if self._deadline is not None:
            self._deadline.cancel()
        log.warning("no longer the leading master (epoch %s): closing every stream", service.epoch)
        streams = [*service.framework_streams.values(), *service.agent_streams.values()]
        service.framework_streams.clear()
        service.agent_streams.clear()
        for outbox in streams:
            outbox.close()
        self._replace_state()
        self._cancelled.extend(service.stop_timers())

    async def close(self) -> None:
        """Wait for the timers of past leaderships to finish cancelling."""
        await asyncio.gather(*self._cancelled, return_exceptions=True)
