"""A blocking face on :class:`~butte.testing.cluster.Cluster`, for code that has no event loop.

    with SyncCluster(agents=2) as cluster:
        cluster.wait_for_agents(2)
        print(cluster.master_state()["slaves"])

It runs the async kit on a private event loop, so it must not be used from inside a running loop (async
tests use ``Cluster`` directly).
"""

from __future__ import annotations

import asyncio
import signal as signals
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar, final

from butte.testing.cluster import AgentProcess, Cluster

T = TypeVar("T")


@final
class SyncCluster:
    """``Cluster`` with blocking methods; takes the same arguments."""

    def __init__(self, agents: int = 1, **kwargs: Any) -> None:
        self.cluster = Cluster(agents, **kwargs)
        self._loop = asyncio.new_event_loop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> SyncCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def master_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the master."""
        return self.cluster.master_url

    @property
    def master_address(self) -> str:
        """``127.0.0.1:PORT`` of the master."""
        return self.cluster.master_address

    @property
    def agents(self) -> list[AgentProcess]:
        """The agent processes, in start order."""
        return self.cluster.agents

    def start(self) -> SyncCluster:
        """Start everything and wait for the agents; see ``Cluster.start``."""
        self._run(self.cluster.start())
        return self

    def stop(self) -> None:
        """Stop everything and close the private loop; see ``Cluster.stop``."""
        try:
            self._run(self.cluster.stop())
        finally:
            self._loop.close()

    def wait_for_agents(self, n: int | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        """See ``Cluster.wait_for_agents``."""
        return self._run(self.cluster.wait_for_agents(n, timeout))

    def master_state(self) -> dict[str, Any]:
        """``GET /master/state`` as a dict."""
        return self._run(self.cluster.master_state())

    def kill_master(self, signal: int = signals.SIGKILL) -> None:
        """See ``Cluster.kill_master``."""
        self._run(self.cluster.kill_master(signal))

    def restart_master(self, *, wait_for_agents: bool = True, timeout: float = 30.0) -> None:
        """See ``Cluster.restart_master``."""
        self._run(self.cluster.restart_master(wait_for_agents=wait_for_agents, timeout=timeout))

    def kill_agent(self, index: int, signal: int = signals.SIGKILL) -> None:
        """See ``Cluster.kill_agent``."""
        self._run(self.cluster.kill_agent(index, signal))

    def restart_agent(self, index: int, *, timeout: float = 30.0) -> None:
        """See ``Cluster.restart_agent``."""
        self._run(self.cluster.restart_agent(index, timeout=timeout))
