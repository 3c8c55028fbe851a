"""A real ``butte marathon`` next to a :class:`~butte.testing.cluster.Cluster`, for tests and benchmarks.

    async with Cluster(agents=2) as cluster, MarathonKit(cluster) as marathon:
        await marathon.request("POST", "/v2/apps", {"id": "/web", "cmd": "sleep 100", "instances": 2})
        await marathon.wait_running("/web", 2)

Marathon is ready when ``GET /ping`` answers; it logs to ``<cluster work dir>/marathon/marathon.log``.
"""

from __future__ import annotations

import asyncio
import signal as signals
from types import TracebackType
from typing import Any, Final, final

import aiohttp

from butte.testing.cluster import Cluster, flag_args
from butte.testing.ports import free_port
from butte.testing.process import ButteProcess
from butte.testing.wait import until

NOT_YET: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
HTTP_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)


@final
class MarathonKit:
    """One ``butte marathon`` process on a free loopback port, registered with ``cluster``'s master."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        flags: dict[str, object] | None = None,
        port: int | None = None,
        name: str = "marathon",
    ) -> None:
        self.cluster = cluster
        self.port = port or free_port()
        work_dir = cluster.work_dir / name
        argv = [
            "marathon",
            f"--master={cluster.master_address}",
            "--http_address=127.0.0.1",
            f"--http_port={self.port}",
            f"--work_dir={work_dir}",
        ]
        self.process = ButteProcess(name, argv + flag_args(flags or {}), self.port, work_dir, cluster._env)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> MarathonKit:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self, timeout_s: float = 30.0) -> MarathonKit:
        """Start the process and wait until it answers ``/ping`` and has registered with the master.

        Raises:
            ProcessError: it exited or did not come up in time (with its log tail).
        """
        self.process.start()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        try:
            await until(self._ready, timeout=timeout_s, what="butte marathon to answer and register")
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        await self.process.stop(10.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def kill(self) -> None:
        """SIGKILL Marathon (its tasks keep running, as Mesos promises) and wait until it is gone."""
        self.process.send_signal(signals.SIGKILL)
        await self.process.wait_exit(10.0)

    async def _ready(self) -> bool:
        if not self.process.running:
            raise self.process.error("butte marathon exited")
        try:
            info = await self.request("GET", "/v2/info")
        except (*NOT_YET, MarathonHttpError):  # 502 until a leader is elected and has loaded its state
            return False
        return bool(info.get("frameworkId"))

    async def request(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """One REST call; returns the JSON answer.

        Raises:
            MarathonHttpError: the answer is not 2xx (carries status and body).
        """
        status, answer = await self.call(method, path, body, **params)
        if status >= 300:
            raise MarathonHttpError(status, answer)
        return answer

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, Any]:
        """One REST call; returns (status, JSON answer or text)."""
        assert self._session is not None, "start() first"
        async with self._session.request(method, self.url + path, json=body, params=params or None) as response:
            text = await response.text()
            if response.content_type == "application/json" and text:
                return response.status, await response.json(content_type=None)
            return response.status, text

    async def app(self, app_id: str) -> dict[str, Any]:
        answer = await self.request("GET", f"/v2/apps{app_id}", embed="app.tasks")
        return dict(answer["app"])

    async def wait_running(self, app_id: str, count: int, *, healthy: bool = False, timeout: float = 30.0) -> None:
        """Wait until the app has ``count`` running tasks (healthy ones with ``healthy``) and no deployment."""

        async def settled() -> bool:
            app = await self.app(app_id)
            running = app["tasksHealthy"] if healthy else app["tasksRunning"]
            return bool(running == count and len(app["tasks"]) == count and not app["deployments"])

        await until(settled, timeout=timeout, what=f"{app_id} to run {count} tasks", interval=0.1)

    async def wait_no_deployments(self, timeout: float = 30.0) -> None:
        async def none_left() -> bool:
            return not await self.request("GET", "/v2/deployments")

        await until(none_left, timeout=timeout, what="every deployment to finish", interval=0.1)


class MarathonHttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
