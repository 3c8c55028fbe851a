"""The agent process: HTTP server, master link, executors, and reliable status updates, on one event loop.

Composition only: the link registers and relays events (``master_link``), ``handlers`` acts on them, the
built-in and custom executor runners start processes, and the update channel delivers every status update
reliably. All state lives on this one event loop (only the launcher's spawn threads leave it, and they
touch no records); nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final

import aiohttp
from aiohttp import web

from butte import MESOS_COMPAT_VERSION
from butte.agent.api.http import build_app
from butte.agent.api.monitor import AgentMonitor
from butte.agent.api.state_view import render_state
from butte.agent.builtin import BuiltinExecutors
from butte.agent.checkpoint import AgentCheckpoint, current_boot_id, discard, write_agent
from butte.agent.checkpointer import Checkpointer
from butte.agent.config import AgentConfig
from butte.agent.context import AgentContext
from butte.agent.executors import CustomExecutors
from butte.agent.gc import GcSchedule, SandboxCollector
from butte.agent.handlers import MasterEvents
from butte.agent.master_link import MasterLink
from butte.agent.restore import RecoveryRefused, RecoverySnapshot, Restorer
from butte.agent.state import AgentState, ExecutorKind
from butte.agent.updates import TaskReporter, UpdateChannel
from butte.containerizer.launcher import Launcher
from butte.wire.agent_link import AgentCall, AgentEvent, Register, Registered, Reregister
from butte.wire.base import ID
from butte.wire.mesos import AgentInfo
from butte.wire.resources import attributes_to_wire, resources_to_wire

log = logging.getLogger(__name__)

# Past this, tasks still running at shutdown are SIGKILLed without more waiting.
SHUTDOWN_EXTRA_S = 5.0


@final
@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What the agent holds right now."""

    agent_id: str | None
    connected: bool
    frameworks: int
    executors: int
    live_tasks: int
    pending_updates: int


@final
class Agent:
    """One agent: owns its records and runs until stopped or refused by the master."""

    def __init__(
        self, config: AgentConfig, *, clock: Callable[[], float] = time.time, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.state = AgentState()
        self.agent_info = AgentInfo(
            hostname=config.hostname,
            port=config.port,
            resources=resources_to_wire(config.resources),
            attributes=attributes_to_wire(config.attributes),
        )
        self.channel = UpdateChannel(
            self._send_call,
            lambda: self.context.agent_id,
            lambda ack: self.events.update_acknowledged(ack),
            clock=clock,
        )
        self.context = AgentContext(
            config=config,
            state=self.state,
            launcher=Launcher(),
            reporter=TaskReporter(self.channel, self.state, lambda: self.context.agent_id, clock),
            agent_info=self.agent_info,
            send=self._send_soon,
            executor_ended=lambda executor: self.events.executor_ended(executor),
        )
        self.builtin = BuiltinExecutors(self.context)
        self.custom = CustomExecutors(self.context)
        self.events = MasterEvents(self.context, self.channel, self.builtin, self.custom, self._refused)
        self.start_time = clock()
        self.exit_code = 0
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._link: MasterLink | None = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stop_requested: asyncio.Event | None = None
        self._checkpointer: Checkpointer | None = None
        self._checkpointed_id: str | None = None
        self.recovery: RecoverySnapshot | None = None
        self.gc = SandboxCollector(
            config.work_dir,
            GcSchedule(config.gc_delay_s, config.gc_disk_headroom),
            config.disk_watch_interval_s,
            clock,
        )
        self.state.observers.append(self.gc)

    async def start(self) -> None:
        """Serve HTTP (so executors can reach us), then connect to the master."""
        self._stop_requested = asyncio.Event()
        monitor = AgentMonitor(self.state, self.builtin.containers, lambda: self.context.agent_id)
        app = build_app(self.custom, self.state_document, self.config.work_dir, lambda: self.context.agent_id, monitor)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        listener = socket.create_server((self.config.ip, self.config.port), reuse_port=False)
        self.agent_info.port = listener.getsockname()[1]  # --port 0 picks a free port
        await web.SockSite(self._runner, listener).start()
        log.info("Agent listening on %s:%d", self.config.ip, self.agent_info.port)
        # Before registering: a recovered agent reregisters with its old id and the tasks it reattached to.
        self._checkpointer, self.recovery = Restorer(self.context, self.channel, self.builtin, self.custom).run()
        self._checkpointed_id = self.context.agent_id or None
        live = [e.directory for f in self.state.frameworks.values() for e in f.executors.values()]
        self.gc.schedule_leftovers(live)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._link = MasterLink(
            self.config.master,
            self._session,
            self,
            backoff_factor_s=self.config.registration_backoff_factor_s,
            rng=self._rng,
        )
        self._spawn(self._link.run())
        self._spawn(self.channel.run_retries())
        self._spawn(self.gc.run())

    async def run(self) -> int:
        """Run until :meth:`request_stop` or a SHUTDOWN from the master; the exit code."""
        try:
            await self.start()
        except RecoveryRefused as exc:
            log.error("%s", exc)
            await self.stop()
            return 1
        assert self._stop_requested is not None
        await self._stop_requested.wait()
        await self.stop()
        return self.exit_code

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask :meth:`run` to stop (signal handlers call this)."""
        self.exit_code = self.exit_code or exit_code
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self) -> None:
        """Kill every task and executor this agent started, then close the server and the link."""
        for task in list(self._background):
            task.cancel()
        await self._kill_everything()
        await asyncio.to_thread(self.context.containers.close)
        if self._checkpointer is not None:
            # A clean stop kills every task, so there is nothing to recover: the next start is a new agent.
            self._checkpointer.journal.close()
            discard(self.config.work_dir)
        if self._link is not None:
            self._link.close()
        self.context.launcher.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        log.info("Agent stopped")

    def state_document(self) -> dict[str, Any]:
        """The ``/state`` document."""
        return render_state(self.config, self.state, self.agent_info, self.start_time, self.config.master)

    def snapshot(self) -> AgentSnapshot:
        """Counts of what the agent holds, for tests, metrics and logs."""
        executors = [e for f in self.state.frameworks.values() for e in f.executors.values()]
        updates = self.channel.manager.snapshot()
        return AgentSnapshot(
            agent_id=self.context.agent_id or None,
            connected=self._link is not None and self._link.stream_id is not None,
            frameworks=len(self.state.frameworks),
            executors=len(executors),
            live_tasks=sum(len(e.tasks) for e in executors),
            pending_updates=updates.pending_updates,
        )

    # ---- LinkListener ----

    def registration_call(self) -> AgentCall:
        """REGISTER the first time; REREGISTER with every live task once the agent has an id."""
        if self.agent_info.id is None:
            register = Register(agent_info=self.agent_info, version=MESOS_COMPAT_VERSION)
            return AgentCall(type="REGISTER", register=register)
        tasks, executors, frameworks = self.state.reregistration_records(self.agent_info.id.value)
        reregister = Reregister(
            agent_info=self.agent_info,
            tasks=tasks,
            executors=executors,
            frameworks=frameworks,
            version=MESOS_COMPAT_VERSION,
        )
        return AgentCall(type="REREGISTER", agent_id=self.agent_info.id, reregister=reregister)

    def on_registered(self, registered: Registered) -> None:
        """The master took us: adopt the id and replay unacknowledged updates."""
        known = self.agent_info.id
        if known is not None and known != registered.agent_id:
            log.warning("Master gave a new agent id %s (was %s)", registered.agent_id.value, known.value)
        self.agent_info.id = ID(value=registered.agent_id.value)
        if self._checkpointed_id != registered.agent_id.value:
            checkpoint = AgentCheckpoint(
                agent_id=registered.agent_id.value, boot_id=current_boot_id(), info=self.agent_info
            )
            write_agent(self.config.work_dir, checkpoint)
            self._checkpointed_id = registered.agent_id.value
        log.info("Registered with master %s as agent %s", registered.master_info.id, registered.agent_id.value)
        self.channel.connected()

    def on_event(self, event: AgentEvent) -> None:
        """One event from the master."""
        try:
            self.events.handle(event)
        except Exception:  # one bad event must not take the agent down
            log.exception("Failed to handle %s event", event.type)

    def on_disconnected(self) -> None:
        """The master stream is gone; updates wait for the next registration."""
        log.info("Disconnected from the master")
        self.channel.disconnected()

    # ---- internals ----

    def _refused(self, message: str) -> None:
        log.error("The master asked this agent to shut down: %s", message or "(no reason given)")
        self.request_stop(exit_code=1)

    async def _send_call(self, call: AgentCall) -> bool:
        return await self._link.send(call) if self._link is not None else False

    def _send_soon(self, call: AgentCall) -> None:
        self._spawn(self._send_call(call))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _kill_everything(self) -> None:
        for framework in list(self.state.frameworks.values()):
            framework.terminating = True  # no updates while shutting down: the master sees us leave
        self.custom.shutdown_all()
        for framework in list(self.state.frameworks.values()):
            for executor in list(framework.executors.values()):
                if executor.kind is not ExecutorKind.CUSTOM:
                    self.builtin.shutdown_executor(executor)
        if await self._all_ended(self.config.executor_shutdown_grace_period_s + SHUTDOWN_EXTRA_S):
            return
        log.warning("Tasks still running after the grace period; killing them")
        self.builtin.destroy_all()
        self.custom.destroy_all()
        if not await self._all_ended(SHUTDOWN_EXTRA_S):
            log.error("Some tasks did not die after SIGKILL")

    async def _all_ended(self, timeout_s: float) -> bool:
        waiting = asyncio.gather(self.builtin.wait_all(), self.custom.wait_all())
        try:
            await asyncio.wait_for(waiting, timeout_s)
        except TimeoutError:
            return False
        return True
