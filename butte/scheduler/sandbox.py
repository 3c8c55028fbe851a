"""Reading a finished task's ``stdout`` and ``stderr`` from its sandbox on the agent.

The sandbox directory comes from the agent's ``GET /state`` (``frameworks[].executors[].directory``, or the
``completed_*`` lists once the executor is gone). Today the files are read straight from disk, which only
works when the agent runs on this machine; reading them through the agent's ``/files/read`` endpoint
(``reference/mesos-v1-api.md`` §4.5) is a second :class:`SandboxReader` to add later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Protocol, final

import aiohttp
import msgspec

from butte.wire.mesos import Offer

log = logging.getLogger(__name__)

DEFAULT_AGENT_PORT = 5051


class _Executor(msgspec.Struct):
    id: str
    directory: str = ""


class _Framework(msgspec.Struct):
    id: str
    executors: list[_Executor] = []
    completed_executors: list[_Executor] = []


class _AgentState(msgspec.Struct):
    frameworks: list[_Framework] = []
    completed_frameworks: list[_Framework] = []


class SandboxReader(Protocol):
    """Reads one file of a sandbox; None when it cannot."""

    async def read(self, directory: str, name: str) -> bytes | None:
        """The bytes of ``directory/name``, or None if they cannot be read from here."""
        ...


@final
class LocalSandboxReader:
    """Reads sandbox files from this machine's disk (the agent runs here)."""

    async def read(self, directory: str, name: str) -> bytes | None:
        """The file's bytes, or None if it does not exist here."""
        path = Path(directory) / name
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            log.debug("cannot read %s: %s", path, exc)
            return None


def agent_address(offer: Offer) -> str:
    """``host:port`` of the agent that made ``offer``, from its ``url`` (else its hostname and port 5051)."""
    if offer.url is not None:
        address = offer.url.address
        return f"{address.ip or address.hostname or offer.hostname}:{address.port}"
    return f"{offer.hostname}:{DEFAULT_AGENT_PORT}"


def is_this_machine(host: str) -> bool:
    """Whether ``host`` (a name or an IP) names the machine we run on."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        if host in ("localhost", socket.gethostname(), socket.getfqdn()):
            return True
    try:
        local_ips = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False
    return host in local_ips


async def find_sandbox_directory(
    session: aiohttp.ClientSession, agent: str, framework_id: str, executor_id: str
) -> str | None:
    """The sandbox directory of an executor, from the agent's ``/state``; None if the agent does not say."""
    try:
        async with session.get(f"http://{agent}/state", timeout=aiohttp.ClientTimeout(total=10)) as response:
            if response.status != 200:
                log.warning("agent %s answered /state with %d", agent, response.status)
                return None
            state = msgspec.json.decode(await response.read(), type=_AgentState)
    except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
        log.warning("cannot read /state of agent %s: %s", agent, exc)
        return None
    for framework in [*state.frameworks, *state.completed_frameworks]:
        if framework.id != framework_id:
            continue
        for executor in [*framework.executors, *framework.completed_executors]:
            if executor.id == executor_id and executor.directory:
                return executor.directory
    return None
