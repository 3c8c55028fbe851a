"""The shell around the status update manager: makes updates, sends them, retries them on a timer.

Effects of the pure :class:`StatusUpdateManager` are carried out here: a forward becomes an UPDATE call to
the master (fire and forget: a lost one is retried by the manager), an acknowledgement goes back to the
agent through ``on_acknowledged``. One timer task sleeps until the manager's next retry is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, final

from butte.agent.state import AgentState, ExecutorState, TaskRecord
from butte.agent.status_updates import Effect, ForwardUpdate, StatusUpdateManager, UpdateAcknowledged
from butte.wire.agent_link import AgentCall, StatusUpdate
from butte.wire.base import ID, b64encode
from butte.wire.mesos import ContainerID, ContainerStatus, Source, TaskState, TaskStatus

log = logging.getLogger(__name__)

SendCall = Callable[[AgentCall], Coroutine[Any, Any, bool]]


class UpdateLog(Protocol):
    """Where updates and acknowledgements are checkpointed (Mesos: before an update is forwarded)."""

    def update_queued(self, framework_id: str, status: TaskStatus) -> None: ...

    def update_acknowledged(self, framework_id: str, task_id: str, uuid: str) -> None: ...

    def flush(self) -> None: ...


def make_status(
    task_id: str,
    state: TaskState,
    *,
    source: Source,
    agent_id: str,
    executor_id: str,
    container_id: str,
    message: str | None = None,
    reason: str | None = None,
    now: float,
    uuid: str,
) -> TaskStatus:
    """A reliable status update (``uuid``: base64 of 16 random bytes) with the agent's fields filled in."""
    return TaskStatus(
        task_id=ID(value=task_id),
        state=state,
        message=message,
        source=source,
        reason=reason,
        agent_id=ID(value=agent_id),
        executor_id=ID(value=executor_id),
        timestamp=now,
        uuid=uuid,
        container_status=ContainerStatus(container_id=ContainerID(value=container_id)),
    )


@final
class UpdateChannel:
    """Reliable delivery of task status updates to the master, on the running event loop."""

    def __init__(
        self,
        send: SendCall,
        agent_id: Callable[[], str],
        on_acknowledged: Callable[[UpdateAcknowledged], None],
        manager: StatusUpdateManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manager = manager or StatusUpdateManager()
        self._send = send
        self._agent_id = agent_id
        self._on_acknowledged = on_acknowledged
        self._clock = clock
        self._wake = asyncio.Event()
        self._timer_due: float | None = None
        self._in_flight: set[asyncio.Task[bool]] = set()
        self._outgoing: list[StatusUpdate] = []
        self.log: UpdateLog | None = None

    def submit(self, framework_id: str, status: TaskStatus) -> None:
        """Queue an update for reliable delivery (checkpointed first)."""
        if self.log is not None:
            self.log.update_queued(framework_id, status)
        self._apply(self.manager.update(framework_id, status, self._clock()))

    def acknowledge(self, framework_id: str, task_id: str, uuid: str) -> None:
        """The framework acknowledged ``uuid`` (relayed by the master)."""
        self._apply(self.manager.acknowledge(framework_id, task_id, uuid, self._clock()))

    def connected(self) -> None:
        """The master (re)registered us: replay every stream's head."""
        self._apply(self.manager.resume(self._clock()))

    def disconnected(self) -> None:
        """The master is gone: hold updates until the next registration."""
        self.manager.pause()

    def forget_framework(self, framework_id: str) -> None:
        """Drop the streams of a framework that was shut down."""
        self.manager.remove_framework(framework_id)

    async def run_retries(self) -> None:
        """Retry unacknowledged heads when their backoff runs out; runs until cancelled."""
        while True:
            due = self._timer_due = self.manager.next_retry_at()
            timeout = None if due is None else max(0.0, due - self._clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._apply(self.manager.tick(self._clock()))

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, ForwardUpdate):
                self._forward(effect)
            else:
                if self.log is not None:
                    self.log.update_acknowledged(effect.framework_id, effect.task_id, effect.uuid)
                self._on_acknowledged(effect)
        if effects:
            due = self.manager.next_retry_at()
            # Wake the timer only when the next retry moved earlier: a new head is due 10 s from now,
            # almost always after what the timer already waits for.
            if due is not None and (self._timer_due is None or due < self._timer_due):
                self._timer_due = due
                self._wake.set()

    def send_once(self, framework_id: str, status: TaskStatus) -> None:
        """Send an update once, outside any stream: it has no uuid, so nobody acknowledges it."""
        status.uuid = None
        self._post(framework_id, status)

    def _forward(self, effect: ForwardUpdate) -> None:
        if effect.retry:
            log.info("Retrying status update %s of task %s", effect.status.state, effect.task_id)
        self._post(effect.framework_id, effect.status)

    def _post(self, framework_id: str, status: TaskStatus) -> None:
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._send_outgoing)
        self._outgoing.append(StatusUpdate(framework_id=ID(value=framework_id), status=status))

    def _send_outgoing(self) -> None:
        # Everything posted in one loop iteration goes in one call: updates of different tasks (a task never
        # has two in flight, so each task's order is kept), and each call costs the master a request.
        updates, self._outgoing = self._outgoing, []
        if self.log is not None:
            self.log.flush()  # nothing leaves the agent before it is checkpointed
        call = AgentCall(type="UPDATE", agent_id=ID(value=self._agent_id()), updates=updates)
        task = asyncio.get_running_loop().create_task(self._send(call))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)


@final
class TaskReporter:
    """Turns task state changes into reliable updates, keeping each task's record in step."""

    def __init__(
        self, channel: UpdateChannel, state: AgentState, agent_id: Callable[[], str], clock: Callable[[], float]
    ) -> None:
        self._channel = channel
        self._state = state
        self._agent_id = agent_id
        self._clock = clock
        # Uuids need to be unique, not secret; os.urandom per update is a slow syscall on small VMs.
        self._rng = random.Random(os.urandom(32))

    def new_uuid(self) -> str:
        """A status update uuid: 16 random bytes, base64 as in Mesos JSON."""
        return b64encode(self._rng.randbytes(16))

    def report(
        self,
        task: TaskRecord,
        executor: ExecutorState,
        state: TaskState,
        *,
        source: Source = "SOURCE_EXECUTOR",
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        """A new state of ``task``, made by the agent (or its built-in executors)."""
        status = make_status(
            task.task_id,
            state,
            source=source,
            agent_id=self._agent_id(),
            executor_id=executor.executor_id,
            container_id=executor.container_id,
            message=message,
            reason=reason,
            now=self._clock(),
            uuid=self.new_uuid(),
        )
        self.forward(task, status)

    def forward(self, task: TaskRecord, status: TaskStatus) -> None:
        """Record ``status`` on its task and send it; nothing follows a terminal state."""
        if task.terminal:
            log.info("Ignoring %s for task %s: it is already %s", status.state, task.task_id, task.state)
            return
        task.record(status)
        log.info("Task %s of framework %s is now %s", task.task_id, task.framework_id, status.state)
        framework = self._state.frameworks.get(task.framework_id)
        if framework is not None and not framework.terminating:  # a shut-down framework hears nothing more
            self._channel.submit(task.framework_id, status)

    def send_untracked(self, framework_id: str, status: TaskStatus) -> None:
        """Reliably send an update about a task the agent keeps no record of (e.g. an unknown id)."""
        log.info("Task %s of framework %s: sending %s", status.task_id.value, framework_id, status.state)
        self._channel.submit(framework_id, status)

    def send_once(self, framework_id: str, status: TaskStatus) -> None:
        """Send an update once, without a uuid, so it cannot disturb the stream of a task with the same id."""
        log.info("Task %s of framework %s: sending %s once", status.task_id.value, framework_id, status.state)
        self._channel.send_once(framework_id, status)

    def new_status(
        self,
        task_id: str,
        state: TaskState,
        *,
        executor_id: str,
        container_id: str = "",
        message: str | None = None,
        reason: str | None = None,
    ) -> TaskStatus:
        """An agent-made update (source SOURCE_AGENT) for ``task_id``."""
        return make_status(
            task_id,
            state,
            source="SOURCE_AGENT",
            agent_id=self._agent_id(),
            executor_id=executor_id,
            container_id=container_id or executor_id,
            message=message,
            reason=reason,
            now=self._clock(),
            uuid=self.new_uuid(),
        )
