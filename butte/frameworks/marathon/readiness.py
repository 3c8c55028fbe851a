"""Marathon's readiness probes: the asyncio shell that GETs an instance's readiness endpoint (A4, A6).

Marathon checks a task's readiness once it runs, during deployments only: ``GET <protocol>://host:<port named
portName><path>`` every ``intervalSeconds``, each with ``timeoutSeconds``; the task is ready as soon as one answer
has a status in ``httpStatusCodesForReady``, and the probe stops there. Every probe's verdict is reported, with
the answer itself (status, content type, body) when ``preserveLastResponse`` asks for it. What a verdict means
for the deployment is the core's business (:meth:`.core.MarathonCore.on_readiness`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import final

import aiohttp

from butte.frameworks.marathon.probing import ProbeSession, stop_loops
from butte.frameworks.marathon.readinessbook import HttpResponse, ReadinessResult
from butte.wire.marathon import ReadinessCheck

log = logging.getLogger(__name__)

ReadinessCallback = Callable[[str, ReadinessResult], None]


def readiness_url(host: str, port: int, check: ReadinessCheck) -> str:
    """Where a check probes: its protocol's scheme, the host (bracketed if IPv6), the port and the path."""
    scheme = "https" if check.protocol == "HTTPS" else "http"
    address = f"[{host}]" if ":" in host else host
    path = check.path if check.path.startswith("/") else f"/{check.path}"
    return f"{scheme}://{address}:{port}{path}"


@final
@dataclass(frozen=True, slots=True)
class ReadinessProbeSnapshot:
    tasks: int


@final
class ReadinessProbe:
    """One probe loop per watched instance, until it is ready or unwatched."""

    def __init__(self, on_result: ReadinessCallback) -> None:
        self._on_result = on_result
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._session = ProbeSession()

    def watch(self, task_id: str, app_id: str, host: str, port: int, check: ReadinessCheck) -> None:
        """Start probing an instance (replacing an earlier watch of it).

        Raises:
            RuntimeError: called outside a running event loop.
        """
        self.unwatch(task_id)
        loop = asyncio.get_running_loop()
        self._loops[task_id] = loop.create_task(
            self._run(task_id, app_id, readiness_url(host, port, check), check), name=f"readiness {task_id}"
        )

    def unwatch(self, task_id: str) -> None:
        """Stop probing an instance; nothing is reported for it afterwards."""
        task = self._loops.pop(task_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Stop every probe and release the HTTP session."""
        tasks = list(self._loops.values())
        self._loops.clear()
        await stop_loops(tasks)
        await self._session.close()

    def snapshot(self) -> ReadinessProbeSnapshot:
        """How many instances are being probed."""
        return ReadinessProbeSnapshot(tasks=len(self._loops))

    async def _run(self, task_id: str, app_id: str, url: str, check: ReadinessCheck) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            response = await self.probe(url, check)
            ready = response is not None and response.status in check.http_status_codes_for_ready
            kept = response if check.preserve_last_response else None
            result = ReadinessResult(name=check.name, task_id=task_id, app_id=app_id, ready=ready, last_response=kept)
            if ready:
                self._loops.pop(task_id, None)  # done before reporting: the consumer may watch it again
            self._report(task_id, result)
            if ready:
                return
            await asyncio.sleep(max(0.0, check.interval_seconds - (loop.time() - began)))

    def _report(self, task_id: str, result: ReadinessResult) -> None:
        # A failing consumer must not stop the probe of an instance that is still starting.
        try:
            self._on_result(task_id, result)
        except Exception:
            log.exception("readiness result consumer failed for %s", task_id)

    async def probe(self, url: str, check: ReadinessCheck) -> HttpResponse | None:
        """One GET; None when no answer came (refused, reset, timed out): not ready, nothing to show."""
        timeout = aiohttp.ClientTimeout(total=check.timeout_seconds)
        try:
            # Marathon accepts any certificate and judges a redirect by its own status.
            async with self._session.get().get(url, timeout=timeout, ssl=False, allow_redirects=False) as answer:
                body = await answer.text(errors="replace") if check.preserve_last_response else ""
                return HttpResponse(status=answer.status, content_type=answer.content_type, body=body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.debug("readiness probe of %s: %s: %s", url, type(exc).__name__, exc)
            return None
