"""A real local Butte cluster in one call: one master and N agents as child processes on loopback.

    async with Cluster(agents=2, work_dir=tmp_path) as cluster:
        await cluster.wait_for_agents(2)
        state = await cluster.master_state()
        await cluster.kill_master()          # SIGKILL by default
        await cluster.restart_master()       # same port and work dir; waits for the agents to come back

The kit relies only on the command-line contract of ``butte master`` and ``butte agent``: the master is
ready when ``GET /health`` answers 200, and an agent is up when ``/master/state`` lists it in ``slaves``
(matched by port). Each process logs to ``<its work dir>/<name>.log``; every error the kit raises ends with
the tails of those logs. Teardown stops only the processes the kit started, then sweeps up the tasks and
executors they left behind (in Mesos, tasks outlive their agent by design).
"""

from __future__ import annotations

import asyncio
import shutil
import signal as signals
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, final

import aiohttp

from butte.testing import process as proc
from butte.testing.ports import free_port
from butte.testing.process import ButteProcess, ProcessError
from butte.testing.wait import WaitTimeout, until

AgentProcess = ButteProcess
MasterProcess = ButteProcess

DEFAULT_AGENT_RESOURCES: Final = "cpus:4;mem:4096;disk:10000;ports:[31000-32000]"
# A short batch interval keeps tests quick; Mesos's default is 1secs.
DEFAULT_MASTER_FLAGS: Final[Mapping[str, object]] = {"allocation_interval": "100ms"}
HTTP_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
# Errors that mean "the process is not answering yet".
NOT_YET: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

PerAgent = str | Sequence[str] | None


def flag_args(flags: Mapping[str, object]) -> list[str]:
    """``{"offer_timeout": "5secs", "strict": False}`` -> ``["--offer_timeout=5secs", "--strict=false"]``.

    A value of None leaves the flag out, so callers can drop one of the kit's defaults.
    """
    args = []
    for name, value in flags.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args.append(f"--{name}={text}")
    return args


def for_agent(value: PerAgent, index: int) -> str | None:
    """One agent's value from a setting given for all agents (a string) or per agent (a sequence)."""
    if value is None or isinstance(value, str):
        return value
    return value[index] if index < len(value) else None


def slave_port(slave: Mapping[str, Any]) -> int | None:
    """The port of a ``/master/state`` slave entry (``port``, else the one in ``pid``)."""
    port = slave.get("port")
    if isinstance(port, int):
        return port
    pid = str(slave.get("pid", ""))
    tail = pid.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def registration_of(slave: Mapping[str, Any]) -> tuple[object, ...]:
    """What changes when an agent registers again: its id and its (re)registration times."""
    return (slave.get("id"), slave.get("registered_time"), slave.get("reregistered_time"))


def is_active(slave: Mapping[str, Any]) -> bool:
    """False for an entry the master has deactivated (a disconnected agent); True if it does not say."""
    return slave.get("active", True) is not False


@final
class Cluster:
    """One master and ``agents`` agents, started on free loopback ports (or the ports given)."""

    def __init__(
        self,
        agents: int = 1,
        *,
        agent_resources: PerAgent = DEFAULT_AGENT_RESOURCES,
        agent_attributes: PerAgent = None,
        master_flags: Mapping[str, object] | None = None,
        agent_flags: Mapping[str, object] | None = None,
        work_dir: str | Path | None = None,
        master_port: int | None = None,
        agent_ports: Sequence[int] = (),
        start_timeout_s: float = 30.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.agent_count = agents
        self.agent_resources = agent_resources
        self.agent_attributes = agent_attributes
        self.master_flags = {**DEFAULT_MASTER_FLAGS, **(master_flags or {})}
        self.agent_flags = dict(agent_flags or {})
        self.agent_ports = list(agent_ports)
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.marker = uuid.uuid4().hex
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="butte-cluster-")).resolve()
        self._env = proc.child_environment(self.marker)
        self.master = self._master_process(master_port or free_port())
        self.agents: list[AgentProcess] = []

    # -- addresses -----------------------------------------------------------------------------------

    @property
    def master_address(self) -> str:
        """``127.0.0.1:PORT`` of the master, as agents and schedulers take it."""
        return self.master.address

    @property
    def master_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the master."""
        return self.master.url

    # -- lifecycle -----------------------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> Cluster:
        """Start the master and the agents and wait until every agent is registered.

        Raises:
            ProcessError: a process died or did not come up in time (the message has the log tails).
        """
        try:
            self.master.start()
            await self.wait_for_master(self.start_timeout_s)
            for agent in self.agents:  # started before and stopped since
                agent.start()
            while len(self.agents) < self.agent_count:
                await self.add_agent(wait=False)
            await self.wait_for_agents(len(self.agents), timeout=self.start_timeout_s)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop the agents, then the master, then kill whatever they left running (only what we started)."""
        try:
            await asyncio.gather(*(agent.stop(self.stop_grace_s) for agent in self.agents))
            await self.master.stop(self.stop_grace_s)
            await self._kill_leftovers()
        finally:
            if self._own_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def stop_now(self) -> None:
        """Blocking teardown for paths with no event loop (fixture finalizers, atexit)."""
        for child in [*self.agents, self.master]:
            child.stop_now(self.stop_grace_s)
        proc.kill_leftovers_now(self.marker, self._sandbox_roots())
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    async def _kill_leftovers(self) -> list[int]:
        """SIGKILL the tasks and executors our agents left behind, and wait until they are gone."""
        pids = proc.leftover_pids(self.marker, self._sandbox_roots())
        proc.kill_pids(pids)
        await until(
            lambda: not any(proc.is_alive(pid) for pid in pids),
            timeout=self.stop_grace_s,
            what=f"leftover processes {pids} to exit",
        )
        return pids

    # -- master --------------------------------------------------------------------------------------

    def _master_process(self, port: int) -> MasterProcess:
        work_dir = self.work_dir / "master"
        argv = ["master", "--ip=127.0.0.1", f"--port={port}", f"--work_dir={work_dir}"]
        return ButteProcess("master", argv + flag_args(self.master_flags), port, work_dir, self._env)

    async def wait_for_master(self, timeout: float = 30.0) -> None:
        """Wait until the master answers ``GET /health`` with 200.

        Raises:
            ProcessError: the master exited or stayed silent (with its log tail).
        """

        async def healthy() -> bool:
            if not self.master.running:
                raise self.master.error(f"master exited with status {self.master.returncode}")
            async with (
                aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
                session.get(f"{self.master_url}/health") as response,
            ):
                return response.status == 200

        try:
            await until(healthy, timeout=timeout, what="master GET /health to answer 200", ignore=NOT_YET)
        except WaitTimeout as exc:
            raise self.master.error(str(exc)) from None

    async def kill_master(self, signal: int = signals.SIGKILL, *, wait: bool = True) -> None:
        """Send ``signal`` to the master and, unless ``wait`` is False, wait until it has exited.

        Raises:
            ProcessError: it did not exit in time.
        """
        self.master.send_signal(signal)
        if wait:
            await self.master.wait_exit(self.stop_grace_s)

    async def restart_master(self, *, wait_for_agents: bool = True, timeout: float = 30.0) -> None:
        """(Re)start the master on the same port and work dir; stops it first if it still runs.

        With ``wait_for_agents`` it also waits until every running agent is registered again.

        Raises:
            ProcessError: the master or an agent did not come back in time.
        """
        if self.master.running:
            await self.master.stop(self.stop_grace_s)
        self.master.start()
        await self.wait_for_master(timeout)
        if wait_for_agents:
            await self.wait_for_agents(timeout=timeout)

    # -- agents --------------------------------------------------------------------------------------

    def _agent_process(self, index: int) -> AgentProcess:
        port = self.agent_ports[index] if index < len(self.agent_ports) else free_port()
        work_dir = self.work_dir / f"agent-{index}"
        argv = ["agent", f"--master={self.master_address}", "--ip=127.0.0.1", f"--port={port}"]
        argv.append(f"--work_dir={work_dir}")
        own = {
            "resources": for_agent(self.agent_resources, index),
            "attributes": for_agent(self.agent_attributes, index),
        }
        argv += flag_args({**own, **self.agent_flags})
        return ButteProcess(f"agent-{index}", argv, port, work_dir, self._env)

    async def add_agent(self, *, wait: bool = True, timeout: float = 30.0) -> AgentProcess:
        """Start one more agent and, with ``wait``, wait until the master lists it.

        Raises:
            ProcessError: it did not register in time.
        """
        agent = self._agent_process(len(self.agents))
        self.agents.append(agent)
        agent.start()
        if wait:
            await self._wait_registered(agent, previous=None, timeout=timeout)
        return agent

    def agent(self, index: int) -> AgentProcess:
        """The agent at ``index``.

        Raises:
            IndexError: there is no such agent.
        """
        return self.agents[index]

    async def kill_agent(self, index: int, signal: int = signals.SIGKILL, *, wait: bool = True) -> None:
        """Send ``signal`` to an agent and, unless ``wait`` is False, wait until it has exited.

        Raises:
            ProcessError: it did not exit in time.
        """
        agent = self.agent(index)
        agent.send_signal(signal)
        if wait:
            await agent.wait_exit(self.stop_grace_s)

    async def restart_agent(self, index: int, *, wait: bool = True, timeout: float = 30.0) -> None:
        """(Re)start an agent on the same port and work dir; stops it first if it still runs.

        With ``wait`` it waits until the master shows a new registration of it (id or (re)registration
        time changed), so a stale entry of the killed agent does not count.

        Raises:
            ProcessError: it did not register again in time.
        """
        agent = self.agent(index)
        active = [s for s in await self._slave_entries(agent) if is_active(s)]
        previous = registration_of(active[0]) if active else None
        if agent.running:
            await agent.stop(self.stop_grace_s)
        agent.start()
        if wait:
            await self._wait_registered(agent, previous=previous, timeout=timeout)

    async def wait_for_agents(self, n: int | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``/master/state`` lists ``n`` of our running agents (default: all running ones).

        Returns their slave entries.

        Raises:
            ProcessError: fewer were listed in time, or an agent exited (with the log tails).
        """
        running = [agent for agent in self.agents if agent.running]
        wanted = len(running) if n is None else n

        # Wrapped in a tuple so that "zero agents listed" is a truthy answer when zero are wanted.
        async def listed() -> tuple[list[dict[str, Any]]] | None:
            self._raise_if_exited(running)
            ports = {agent.port for agent in running}
            slaves = [s for s in await self._slaves() if slave_port(s) in ports and is_active(s)]
            return (slaves,) if len(slaves) >= wanted else None

        try:
            what = f"{wanted} agents in /master/state"
            found: tuple[list[dict[str, Any]]] = await until(listed, timeout=timeout, what=what, ignore=NOT_YET)
            return found[0]
        except WaitTimeout as exc:
            raise self._error(str(exc), [self.master, *running]) from None

    async def _wait_registered(self, agent: AgentProcess, previous: tuple[object, ...] | None, timeout: float) -> None:
        async def registered_anew() -> bool:
            self._raise_if_exited([agent])
            entries = await self._slave_entries(agent)
            return any(is_active(s) and registration_of(s) != previous for s in entries)

        try:
            await until(registered_anew, timeout=timeout, what=f"{agent.name} to register", ignore=NOT_YET)
        except WaitTimeout as exc:
            raise self._error(str(exc), [self.master, agent]) from None

    def _raise_if_exited(self, agents: Sequence[AgentProcess]) -> None:
        for agent in agents:
            if not agent.running:
                raise agent.error(f"{agent.name} exited with status {agent.returncode}")

    def _sandbox_roots(self) -> list[Path]:
        return [agent.work_dir for agent in self.agents]

    # -- HTTP ----------------------------------------------------------------------------------------

    async def get_json(self, path: str, base_url: str | None = None) -> Any:
        """GET ``path`` from the master (or ``base_url``) and decode its JSON body.

        Raises:
            aiohttp.ClientResponseError: the answer was not 2xx.
        """
        # A session per request: the kit may be driven from several event loops (SyncCluster, fixtures).
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
            session.get(f"{base_url or self.master_url}{path}") as response,
        ):
            response.raise_for_status()
            return await response.json(content_type=None)

    async def master_state(self) -> dict[str, Any]:
        """``GET /master/state`` as a dict."""
        state: dict[str, Any] = await self.get_json("/master/state")
        return state

    async def _slaves(self) -> list[dict[str, Any]]:
        slaves: list[dict[str, Any]] = (await self.master_state()).get("slaves", [])
        return slaves

    async def _slave_entries(self, agent: AgentProcess) -> list[dict[str, Any]]:
        """Every ``slaves`` entry with this agent's port: a killed agent's stale entry may linger."""
        try:
            slaves = await self._slaves()
        except NOT_YET:
            return []
        return [s for s in slaves if slave_port(s) == agent.port]

    # -- diagnostics ---------------------------------------------------------------------------------

    def logs(self, lines: int = proc.LOG_TAIL_LINES) -> str:
        """The log tails of every process, for failure messages."""
        return "\n".join(f"--- {p.log_path} ---\n{p.log_tail(lines)}" for p in [self.master, *self.agents])

    def _error(self, message: str, processes: Sequence[ButteProcess]) -> ProcessError:
        return ProcessError(f"{message}\n{proc.log_tails(processes)}")
