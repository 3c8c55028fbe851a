"""Marathon-side health checks (``HTTP``, ``HTTPS``, ``TCP``): probes run by the framework itself (A4).

Marathon probes every ``intervalSeconds`` from the leader; an HTTP answer of 200-399 within
``timeoutSeconds`` passes, a TCP check passes when it connects. Failures within ``gracePeriodSeconds`` of the
task's start, before its first success, are ignored. COMMAND and MESOS_* checks run on the agent and are not
ours. The timing rules are the pure :func:`next_result` and :func:`should_kill`; :class:`HealthProbe` is the
asyncio shell that probes and reports a :class:`HealthResult` after every probe. Killing is the caller's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

import aiohttp

from butte.core.errors import ValidationError
from butte.frameworks.marathon.model import HealthResult
from butte.frameworks.marathon.probing import ProbeSession, stop_loops
from butte.frameworks.marathon.taskinfo import check_port
from butte.wire.marathon import HealthCheck

log = logging.getLogger(__name__)

MARATHON_SIDE_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP"})

ResultCallback = Callable[[str, int, HealthResult], None]
Verdict = tuple[bool | None, str | None]
"""(passed, cause): passed None means the probe's answer is discarded (``ignoreHttp1xx``)."""


def next_result(
    previous: HealthResult | None, ok: bool, cause: str | None, now: float, started_at: float, check: HealthCheck
) -> HealthResult:
    """Fold one probe into the check's result, as Marathon's ``Health.update`` and ``ignoreFailures`` do."""
    base = previous if previous is not None else HealthResult(alive=False)
    if ok:
        first = base.first_success if base.first_success is not None else now
        return HealthResult(
            alive=True,
            consecutive_failures=0,
            first_success=first,
            last_success=now,
            last_failure=base.last_failure,
            last_failure_cause=base.last_failure_cause,
        )
    if base.first_success is None and now < started_at + check.grace_period_seconds:
        return base  # Marathon ignores failures in the grace period until the first success.
    return HealthResult(
        alive=False,
        consecutive_failures=base.consecutive_failures + 1,
        first_success=base.first_success,
        last_success=base.last_success,
        last_failure=now,
        last_failure_cause=cause or "health check failed",
    )


def should_kill(result: HealthResult, check: HealthCheck) -> bool:
    """More than ``maxConsecutiveFailures`` failures in a row; 0 never kills for Marathon-side checks."""
    limit = check.max_consecutive_failures
    return limit > 0 and result.consecutive_failures > limit


def http_verdict(status: int, check: HealthCheck) -> Verdict:
    """200-399 passes; with ``ignoreHttp1xx`` a 1xx is discarded (Marathon leaves the health unchanged)."""
    if 200 <= status < 400:
        return True, None
    if 100 <= status < 200 and check.ignore_http1xx:
        return None, None
    return False, f"HTTP status {status}"


@final
@dataclass(frozen=True, slots=True)
class HealthProbeSnapshot:
    tasks: int
    loops: int


@final
class HealthProbe:
    """Runs one probe loop per Marathon-side check of each watched task."""

    def __init__(self, on_result: ResultCallback, *, clock: Callable[[], float]) -> None:
        self._on_result = on_result
        self._clock = clock
        self._loops: dict[str, list[asyncio.Task[None]]] = {}
        self._session = ProbeSession()

    def watch(
        self, task_id: str, host: str, ports: Sequence[int], checks: Sequence[HealthCheck], started_at: float
    ) -> None:
        """Start probing a running task (replacing an earlier watch of it); COMMAND and MESOS_* checks are skipped.

        Raises:
            RuntimeError: called outside a running event loop.
        """
        self.unwatch(task_id)
        loop = asyncio.get_running_loop()
        loops = [
            loop.create_task(self._run(task_id, index, host, tuple(ports), check, started_at), name=f"health {task_id}")
            for index, check in enumerate(checks)
            if check.protocol in MARATHON_SIDE_PROTOCOLS
        ]
        if loops:
            self._loops[task_id] = loops

    def unwatch(self, task_id: str) -> None:
        """Stop probing a task; nothing is reported for it afterwards."""
        for task in self._loops.pop(task_id, []):
            task.cancel()

    async def close(self) -> None:
        """Stop every probe and release the HTTP session."""
        tasks = [task for loops in self._loops.values() for task in loops]
        self._loops.clear()
        await stop_loops(tasks)
        await self._session.close()

    def snapshot(self) -> HealthProbeSnapshot:
        """How many tasks and probe loops are running."""
        return HealthProbeSnapshot(tasks=len(self._loops), loops=sum(len(loops) for loops in self._loops.values()))

    async def _run(
        self, task_id: str, index: int, host: str, ports: tuple[int, ...], check: HealthCheck, started_at: float
    ) -> None:
        loop = asyncio.get_running_loop()
        result: HealthResult | None = None
        while True:
            began = loop.time()
            passed, cause = await self.probe(host, ports, check)
            if passed is not None:
                result = next_result(result, passed, cause, self._clock(), started_at, check)
            self._report(task_id, index, result if result is not None else HealthResult(alive=False))
            await asyncio.sleep(max(0.0, check.interval_seconds - (loop.time() - began)))

    def _report(self, task_id: str, index: int, result: HealthResult) -> None:
        # A failing consumer must not stop the checks of a task that is still running.
        try:
            self._on_result(task_id, index, result)
        except Exception:
            log.exception("health result consumer failed for %s", task_id)

    async def probe(self, host: str, ports: Sequence[int], check: HealthCheck) -> Verdict:
        """One probe of one check; errors and timeouts are failures with their cause."""
        try:
            port = check_port(check, ports)
        except ValidationError as exc:
            return False, exc.msg
        try:
            if check.protocol == "TCP":
                return await self._probe_tcp(host, port, check.timeout_seconds)
            return await self._probe_http(host, port, check)
        except TimeoutError:
            return False, f"no answer within {check.timeout_seconds} s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def _probe_tcp(self, host: str, port: int, timeout_s: float) -> Verdict:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, None

    async def _probe_http(self, host: str, port: int, check: HealthCheck) -> Verdict:
        scheme = "https" if check.protocol == "HTTPS" else "http"
        address = f"[{host}]" if ":" in host else host
        url = f"{scheme}://{address}:{port}{check.path or '/'}"
        timeout = aiohttp.ClientTimeout(total=check.timeout_seconds)
        # Marathon accepts any certificate and judges a redirect by its own status (3xx passes).
        async with self._session.get().get(url, timeout=timeout, ssl=False, allow_redirects=False) as response:
            return http_verdict(response.status, check)
