"""What Marathon's HTTP probers share: one lazily opened HTTP session, and stopping their loops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import final

import aiohttp


@final
class ProbeSession:
    """An aiohttp session opened on first use, with a fresh connection per probe, as Marathon's: a kept-alive
    socket would hide a server that stopped accepting connections."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def stop_loops(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel probe loops and wait until they are gone."""
    stopping = list(tasks)
    for task in stopping:
        task.cancel()
    await asyncio.gather(*stopping, return_exceptions=True)
