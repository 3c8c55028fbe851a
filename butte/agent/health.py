"""A built-in task's health check, check and max completion time, run while the task runs (Mesos's checkers).

:class:`TaskChecks` sits between a :class:`~butte.executor.command.CommandTask` and the reporter: every
update the task reports passes through it and picks up ``healthy`` (once known) and ``check_status`` (when
the task has a check), as Mesos's command executor fills them in. Seeing TASK_RUNNING starts the probes and
the deadline; seeing a terminal state stops them. The pure machines in ``checks_fsm`` decide; this module
runs the probes: COMMAND in the task's sandbox with its environment and user, HTTP to 127.0.0.1 (healthy
for 200-399, as Mesos), TCP connect to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, final

import aiohttp
import msgspec

from butte.agent.checks_fsm import (
    CheckMachine,
    CheckPolicy,
    CheckResult,
    Effect,
    HealthMachine,
    HealthPolicy,
    KillUnhealthy,
    ProbeFailed,
    ProbePassed,
    ReportCheck,
    ReportHealth,
    ScheduleProbe,
)
from butte.agent.state import ExecutorState, TaskRecord
from butte.agent.updates import TaskReporter
from butte.containerizer.environment import command_variables
from butte.containerizer.launcher import Launcher, LaunchError, LaunchSpec
from butte.containerizer.process import Process
from butte.core.errors import ValidationError
from butte.executor.command import command_argv
from butte.wire.checks import (
    CheckInfo,
    CheckStatusInfo,
    CheckType,
    HealthCheck,
    check_info_type,
    check_status_result,
    decode_check,
    decode_health_check,
    health_check_type,
    to_raw,
)
from butte.wire.mesos import TERMINAL_STATES, CommandInfo, Source, TaskState

log = logging.getLogger(__name__)

T = TypeVar("T")
Probe = Callable[[float], Awaitable[int | bool | None]]  # timeout_s -> exit code / HTTP status / TCP success


class Killable(Protocol):
    """The task the checks may kill."""

    def kill_as(self, state: TaskState, message: str, reason: str | None) -> None: ...


@final
@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Where a COMMAND probe runs: the task's sandbox, environment and user."""

    launcher: Launcher
    task: LaunchSpec  # the task's own launch: its cwd, environment and user


@final
class TaskChecks:
    """The health check, check and deadline of one task, and the updates they add to."""

    def __init__(
        self, record: TaskRecord, executor: ExecutorState, reporter: TaskReporter, probes: ProbeContext
    ) -> None:
        task = record.info
        self._record = record
        self._executor = executor
        self._reporter = reporter
        self._probes = probes
        self._health_check = _decoded(decode_health_check, task.health_check, task.task_id.value)
        self._check = _decoded(decode_check, task.check, task.task_id.value)
        self._max_completion_s = (
            task.max_completion_time.nanoseconds / 1e9 if task.max_completion_time is not None else None
        )
        self._task: Killable | None = None
        self._health: HealthMachine | None = None
        self._check_machine: CheckMachine | None = None
        self._running: list[asyncio.Task[None]] = []
        self._deadline: asyncio.TimerHandle | None = None
        self._healthy: bool | None = None
        self._stopped = False

    @property
    def needed(self) -> bool:
        """Whether the task has anything for this to do."""
        return self._health_check is not None or self._check is not None or self._max_completion_s is not None

    def attach(self, task: Killable) -> None:
        """The task to kill when it fails its health check or outlives its deadline."""
        self._task = task
        if self._record.state == "TASK_RUNNING" and self.needed and not self._running:
            # Found running after an agent restart: its TASK_RUNNING is not sent again, so start now, from
            # the health last reported. The deadline keeps counting from the first TASK_RUNNING, whose
            # checkpointed timestamp says when it started; one that passed while the agent was down kills now.
            self._healthy = next((s.healthy for s in reversed(self._record.statuses) if s.healthy is not None), None)
            running = [s.timestamp for s in self._record.statuses if s.state == "TASK_RUNNING" and s.timestamp]
            self._start(running_since=min(running, default=None))

    def report(
        self,
        state: TaskState,
        *,
        source: Source = "SOURCE_EXECUTOR",
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Send one update of the task (the ``Report`` of a command task), starting or stopping the checks."""
        self._emit(state, source, message, reason)
        if state in TERMINAL_STATES:
            self.stop()
        elif state == "TASK_RUNNING" and not self._running and not self._stopped:
            self._start()

    def stop(self) -> None:
        """Cancel every probe and the deadline."""
        self._stopped = True
        for running in self._running:
            running.cancel()
        if self._deadline is not None:
            self._deadline.cancel()

    def _emit(self, state: TaskState, source: Source, message: str | None, reason: str | None) -> None:
        executor = self._executor
        status = self._reporter.new_status(
            self._record.task_id,
            state,
            executor_id=executor.executor_id,
            container_id=executor.container_id,
            message=message,
            reason=reason,
        )
        status.source = source
        status.healthy = self._healthy
        if self._check is not None:
            last = self._check_machine.last if self._check_machine is not None else None
            status.check_status = to_raw(self._check_status(last))
        self._reporter.forward(self._record, status)

    def _start(self, running_since: float | None = None) -> None:
        """Start the probes, and the deadline (counted from ``running_since``, a wall-clock time, if given)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            health_probe = self._health_probe(self._health_check) if self._health_check else None
            check_probe = self._check_probe(self._check) if self._check else None
        except ValidationError as exc:  # the master does not validate these: never fatal to the task
            log.warning("Not running the checks of a task: %s", exc)
            health_probe = check_probe = None
        if self._health_check is not None and health_probe is not None:
            self._health = HealthMachine(health_policy(self._health_check), now)
            kind = health_check_type(self._health_check)
            self._running.append(loop.create_task(self._run_health(self._health, kind, health_probe)))
        if self._check is not None and check_probe is not None:
            self._check_machine = CheckMachine(check_policy(self._check), now)
            self._running.append(loop.create_task(self._run_check(self._check_machine, check_probe)))
        if self._max_completion_s is not None:
            elapsed_s = 0.0 if running_since is None else max(0.0, time.time() - running_since)
            self._deadline = loop.call_later(max(0.0, self._max_completion_s - elapsed_s), self._deadline_reached)

    async def _run_health(self, machine: HealthMachine, kind: CheckType, probe: Probe) -> None:
        effects = machine.start()
        loop = asyncio.get_running_loop()
        while (due := _next_probe(effects)) is not None:
            self._apply(effects)
            await asyncio.sleep(max(0.0, due - loop.time()))
            timeout_s = machine.policy.timeout_s
            passed, detail = _health_outcome(kind, await _bounded(probe, timeout_s), timeout_s)
            event = ProbePassed() if passed else ProbeFailed(detail)
            if not passed:
                log.info("Health check failed: %s", detail)
            effects = machine.handle(event, loop.time())
        self._apply(effects)

    async def _run_check(self, machine: CheckMachine, probe: Probe) -> None:
        effects = machine.start()
        loop = asyncio.get_running_loop()
        while (due := _next_probe(effects)) is not None:
            self._apply(effects)
            await asyncio.sleep(max(0.0, due - loop.time()))
            result = await _bounded(probe, machine.policy.timeout_s)
            effects = machine.handle(CheckResult(result), loop.time())

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, ReportHealth):
                self._healthy = effect.healthy
                self._emit("TASK_RUNNING", "SOURCE_EXECUTOR", None, "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED")
            elif isinstance(effect, ReportCheck):
                self._emit("TASK_RUNNING", "SOURCE_EXECUTOR", None, "REASON_TASK_CHECK_STATUS_UPDATED")
            elif isinstance(effect, KillUnhealthy) and self._task is not None:
                log.warning("%s", effect.message)
                self._task.kill_as("TASK_KILLED", effect.message, None)

    def _deadline_reached(self) -> None:
        if self._task is not None and not self._stopped:
            seconds = f"{self._max_completion_s:g}"
            message = f"Task exceeded its max completion time of {seconds} seconds"
            log.warning("%s", message)
            self._task.kill_as("TASK_FAILED", message, "REASON_MAX_COMPLETION_TIME_REACHED")

    def _check_status(self, last: CheckResult | None) -> CheckStatusInfo:
        assert self._check is not None
        return check_status_result(check_info_type(self._check), last.value if last is not None else None)

    def _health_probe(self, check: HealthCheck) -> Probe:
        http = check.http
        url = f"{http.scheme or 'http'}://127.0.0.1:{http.port}{http.path or '/'}" if http else None
        port = check.tcp.port if check.tcp else None
        return build_probe(self._probes, health_check_type(check), check.command, url, port, "health_check")

    def _check_probe(self, check: CheckInfo) -> Probe:
        url = f"http://127.0.0.1:{check.http.port}{check.http.path or '/'}" if check.http else None
        port = check.tcp.port if check.tcp else None
        command = check.command.command if check.command else None
        return build_probe(self._probes, check_info_type(check), command, url, port, "check")


def build_probe(
    context: ProbeContext, kind: CheckType, command: CommandInfo | None, url: str | None, port: int | None, field: str
) -> Probe:
    """The probe of one check: run ``command``, GET ``url``, or connect to ``port``, as ``kind`` says.

    Raises:
        ValidationError: the check lacks the sub-message its type needs.
    """
    if kind == "COMMAND" and command is not None:
        return lambda timeout_s: command_probe(context, command, timeout_s)
    if kind == "HTTP" and url is not None:
        return lambda timeout_s: http_probe(url, timeout_s)
    if kind == "TCP" and port is not None:
        return lambda timeout_s: tcp_probe(port, timeout_s)
    raise ValidationError(field, f"a {kind} check needs its '{kind.lower()}' field")


def health_policy(check: HealthCheck) -> HealthPolicy:
    """The timing of a wire health check."""
    return HealthPolicy(
        delay_s=check.delay_seconds,
        interval_s=check.interval_seconds,
        timeout_s=check.timeout_seconds,
        consecutive_failures=max(1, check.consecutive_failures),
        grace_period_s=check.grace_period_seconds,
    )


def check_policy(check: CheckInfo) -> CheckPolicy:
    """The timing of a wire check."""
    return CheckPolicy(delay_s=check.delay_seconds, interval_s=check.interval_seconds, timeout_s=check.timeout_seconds)


async def command_probe(context: ProbeContext, command: CommandInfo, timeout_s: float) -> int | None:
    """Run ``command`` in the task's sandbox; its exit code, or None when it timed out or could not start."""
    argv, program = command_argv(command)
    task = context.task
    env = {**task.env, **command_variables(command.environment)}
    spec = LaunchSpec(argv, env, task.cwd, os.devnull, os.devnull, task.user, executable=program)
    try:
        process = await _launch_cancellable(context.launcher, spec)
    except LaunchError as exc:
        log.info("Check command could not start: %s", exc)
        return None
    try:
        return await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        return None
    finally:
        process.signal_group(signal.SIGKILL)


async def http_probe(url: str, timeout_s: float) -> int | None:
    """GET ``url``; the response status, or None when nothing answered in time."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def tcp_probe(port: int, timeout_s: float) -> bool:
    """Whether 127.0.0.1:``port`` accepts a connection in time."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _launch_cancellable(launcher: Launcher, spec: LaunchSpec) -> Process:
    # The spawn runs on a launcher thread: if the checks stop meanwhile, kill the probe once it exists.
    launching = asyncio.ensure_future(launcher.launch(spec))
    try:
        return await asyncio.shield(launching)
    except asyncio.CancelledError:
        launching.add_done_callback(_kill_launched)
        raise


def _kill_launched(launching: asyncio.Future[Process]) -> None:
    if not launching.cancelled() and launching.exception() is None:
        launching.result().signal_group(signal.SIGKILL)


async def _bounded(probe: Probe, timeout_s: float) -> int | bool | None:
    # Each probe bounds itself; this catches one that overruns anyway (e.g. a slow spawn).
    try:
        return await asyncio.wait_for(probe(timeout_s), timeout_s + 1.0)
    except TimeoutError:
        return None
    except Exception:  # a probe that breaks is a failed probe, never the end of the task's checks
        log.exception("A check probe failed unexpectedly")
        return None


def _health_outcome(kind: CheckType, result: int | bool | None, timeout_s: float) -> tuple[bool, str]:
    """Whether a health probe passed (exit 0, HTTP 200-399, TCP connected) and, if not, why."""
    if result is None:
        return False, f"{kind} health check got no result within {timeout_s:g} seconds"
    if isinstance(result, bool):
        return result, "" if result else f"{kind} health check could not connect"
    if kind == "HTTP":
        return 200 <= result < 400, f"{kind} health check got status {result}"
    return result == 0, f"{kind} health check exited with status {result}"


def _next_probe(effects: list[Effect]) -> float | None:
    return next((effect.at for effect in effects if isinstance(effect, ScheduleProbe)), None)


def _decoded(decode: Callable[[msgspec.Raw], T | None], raw: msgspec.Raw, task_id: str) -> T | None:
    # The master passes these through unchecked: a malformed one is logged and not run, never fatal.
    try:
        return decode(raw)
    except ValidationError as exc:
        log.warning("Ignoring the malformed check of task %s: %s", task_id, exc)
        return None
