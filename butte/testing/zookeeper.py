"""A real 3-node ZooKeeper ensemble on loopback, from Debian's ``zookeeper`` package, and an HA cluster on it.

    async with HaCluster(tmp_path, masters=3, agents=2) as ha:   # ensemble, 3 masters with --zk, agents
        leader = await ha.wait_for_leader()
        await ha.kill_master(leader)                              # SIGKILL; a standby takes over

Each node is a plain ``java ... QuorumPeerMain zooN.cfg`` (no ``zkServer.sh``: that reads Debian's defaults and
adds JMX flags) with a short ``tickTime`` so elections and session expiry happen in seconds. Readiness is
asked with the ``srvr`` four-letter word: a node serving requests reports its ``Mode``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, final

import aiohttp

from butte.testing import process as proc
from butte.testing.cluster import DEFAULT_AGENT_RESOURCES, DEFAULT_MASTER_FLAGS, HTTP_TIMEOUT, NOT_YET, flag_args
from butte.testing.ports import free_port
from butte.testing.process import ButteProcess
from butte.testing.wait import WaitTimeout, until

ZOOKEEPER_JAR: Final = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF: Final = Path("/etc/zookeeper/conf")
# The jar alone logs nothing (slf4j falls back to its no-op logger); the package depends on these two, and with
# them each node logs at INFO to its zk.log, which a failure message then shows.
LOGGING_JARS: Final = (Path("/usr/share/java/slf4j-log4j12.jar"), Path("/usr/share/java/log4j-1.2.jar"))
# 250 ms ticks: sessions may be negotiated from 0.5 s (2 ticks) to 5 s (20 ticks) unless raised below.
TICK_MS: Final = 250
MAX_SESSION_TIMEOUT_MS: Final = 30_000


def unavailable_reason() -> str | None:
    """Why an ensemble cannot start here (no package, no java), or None if it can."""
    if not ZOOKEEPER_JAR.exists():
        return f"Debian's zookeeper package is not installed ({ZOOKEEPER_JAR} missing; run scripts/install-zookeeper)"
    if shutil.which("java") is None:
        return "no java runtime on PATH (run scripts/install-zookeeper)"
    return None


def server_mode(port: int, timeout_s: float = 1.0) -> str | None:
    """``leader``/``follower``/``standalone`` from the ``srvr`` word, or None while the node does not serve."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"srvr")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return None
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


@final
class ZooKeeperEnsemble:
    """Three ZooKeeper servers on free loopback ports under ``work_dir``; start, kill one, stop."""

    def __init__(self, work_dir: Path, size: int = 3) -> None:
        self.work_dir = work_dir
        self.client_ports = [free_port() for _ in range(size)]
        self._peer_ports = [(free_port(), free_port()) for _ in range(size)]
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def hosts(self) -> str:
        """The connect string, ``127.0.0.1:p1,127.0.0.1:p2,...``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.client_ports)

    def url(self, path: str = "/butte") -> str:
        """A ``zk://`` URL naming every node and ``path``."""
        return f"zk://{self.hosts}{path}"

    async def __aenter__(self) -> ZooKeeperEnsemble:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start every node and wait until each serves (a quorum has formed).

        Raises:
            ProcessError: a node exited, or the ensemble did not form in time (the message has every node's log
                tail).
        """
        for index in range(len(self.client_ports)):
            self.start_node(index)
        try:
            await until(self._all_serving, timeout=timeout_s, what="the ZooKeeper ensemble to form a quorum")
        except (WaitTimeout, proc.ProcessError) as exc:
            raise proc.ProcessError(f"{exc}\n{self.log_tails()}") from exc

    def _all_serving(self) -> bool:
        """Whether every node serves; a node that exited will not (it could not bind a port, say): fail now."""
        exited = {index + 1: node.returncode for index, node in self._procs.items() if node.poll() is not None}
        if exited:
            raise proc.ProcessError(f"ZooKeeper nodes exited while the ensemble formed (node: exit code): {exited}")
        return all(server_mode(port) is not None for port in self.client_ports)

    def log_tails(self) -> str:
        """The last lines of every node's log, for failure messages."""
        logs = [self.work_dir / f"zk{index + 1}" / "zk.log" for index in range(len(self.client_ports))]
        return "\n".join(f"--- last lines of {log} ---\n{proc.read_tail(log)}" for log in logs)

    def start_node(self, index: int) -> None:
        """Start node ``index`` (0-based) with its config and data dir."""
        node_dir = self.work_dir / f"zk{index + 1}"
        (node_dir / "data").mkdir(parents=True, exist_ok=True)
        (node_dir / "data" / "myid").write_text(f"{index + 1}\n")
        config = node_dir / "zoo.cfg"
        config.write_text(self._config(node_dir / "data", index))
        jars = [ZOOKEEPER_JAR, *(jar for jar in LOGGING_JARS if jar.exists())]
        classpath = ":".join(map(str, [ZOOKEEPER_CONF, *jars]))
        main = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        argv = ["java", "-Xmx128m", "-Dzookeeper.root.logger=INFO,CONSOLE", "-cp", classpath, main, str(config)]
        with open(node_dir / "zk.log", "ab") as log:
            self._procs[index] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _config(self, data_dir: Path, index: int) -> str:
        servers = "".join(
            f"server.{i + 1}=127.0.0.1:{quorum}:{election}\n" for i, (quorum, election) in enumerate(self._peer_ports)
        )
        return (
            f"tickTime={TICK_MS}\ninitLimit=20\nsyncLimit=10\ndataDir={data_dir}\n"
            f"clientPort={self.client_ports[index]}\nclientPortAddress=127.0.0.1\n"
            f"maxSessionTimeout={MAX_SESSION_TIMEOUT_MS}\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=srvr,ruok,mntr\n" + servers
        )

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``."""
        proc = self._procs.pop(index, None)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 5 s)."""
        for node in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)
        for node in self._procs.values():
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(node.pid, signal.SIGKILL)
                node.wait()
        self._procs.clear()


@contextlib.contextmanager
def one_server_ensemble(directory: Path) -> Iterator[ZooKeeperEnsemble]:
    """A started single-server ensemble for a synchronous (module-scoped) fixture, stopped on exit.

    One server is enough where behaviour does not depend on the quorum, and it starts in seconds.
    """
    zookeeper = ZooKeeperEnsemble(directory, size=1)
    try:
        asyncio.run(zookeeper.start())
        yield zookeeper
    finally:
        zookeeper.stop()


async def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body.

    Raises:
        aiohttp.ClientError: no answer or not 200.
    """
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, session.get(url) as response:
        response.raise_for_status()
        return await response.json()


@final
class HaCluster:
    """A ZooKeeper ensemble, ``masters`` masters electing a leader in it, and agents following the leader."""

    def __init__(
        self,
        work_dir: Path,
        *,
        masters: int = 3,
        agents: int = 2,
        zk_session_timeout: str = "2secs",
        master_flags: Mapping[str, object] | None = None,
        agent_flags: Mapping[str, object] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.ensemble = ZooKeeperEnsemble(work_dir / "zookeeper")
        self.zk_url = self.ensemble.url("/butte")
        self.marker = uuid.uuid4().hex
        self._env = proc.child_environment(self.marker)
        flags = {**DEFAULT_MASTER_FLAGS, **(master_flags or {})}
        flags |= {"zk": self.zk_url, "quorum": (masters // 2) + 1, "zk_session_timeout": zk_session_timeout}
        self.masters = [self._process(f"master-{i}", ["master", "--ip=127.0.0.1"], flags) for i in range(masters)]
        agent_flags = {"resources": DEFAULT_AGENT_RESOURCES, **(agent_flags or {}), "master": self.zk_url}
        self.agents = [self._process(f"agent-{i}", ["agent", "--ip=127.0.0.1"], agent_flags) for i in range(agents)]

    def _process(self, name: str, argv: list[str], flags: Mapping[str, object]) -> ButteProcess:
        port = free_port()
        work_dir = self.work_dir / name
        full = [*argv, f"--port={port}", f"--work_dir={work_dir}", *flag_args(flags)]
        return ButteProcess(name, full, port, work_dir, self._env)

    async def __aenter__(self) -> HaCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the ensemble, the masters and the agents; wait for a leader listing every agent.

        Raises:
            ProcessError: no leader, or not every agent registered, in time (the message has the log tails).
        """
        await self.ensemble.start()
        for child in [*self.masters, *self.agents]:
            child.start()
        try:
            await self.wait_for_agents(timeout_s)
            await until(self._all_know_the_leader, timeout=timeout_s, what="every master to know the leader")
        except WaitTimeout as exc:
            raise proc.ProcessError(f"{exc}\n{proc.log_tails([*self.masters, *self.agents])}") from exc

    async def _all_know_the_leader(self) -> bool:
        states = await asyncio.gather(*(self.state_of(m) for m in self.masters), return_exceptions=True)
        return all(isinstance(state, dict) and state.get("leader") for state in states)

    async def stop(self) -> None:
        """Stop agents, masters and ZooKeeper, then what the agents left running (only what we started)."""
        await asyncio.gather(*(child.stop(5.0) for child in [*self.agents, *self.masters]))
        proc.kill_pids(proc.leftover_pids(self.marker, [agent.work_dir for agent in self.agents]))
        self.ensemble.stop()

    async def state_of(self, master: ButteProcess) -> dict[str, Any]:
        """``/master/state`` of one master."""
        state: dict[str, Any] = await get_json(f"{master.url}/master/state")
        return state

    async def leader(self) -> ButteProcess | None:
        """The running master that says it leads, when exactly one does; else None (all asked at once: one may
        be paused).

        A master resumed after a pause past its session still says it leads until it has seen its session
        expire: asked in that moment, both it and the real leader say so, and neither answer can be trusted yet.
        """
        running = [master for master in self.masters if master.running]
        answers = await asyncio.gather(*(self._leads(master) for master in running))
        leading = [master for master, leads in zip(running, answers, strict=True) if leads]
        return leading[0] if len(leading) == 1 else None

    async def _leads(self, master: ButteProcess) -> bool:
        with contextlib.suppress(*NOT_YET):
            async with asyncio.timeout(1.0):
                state = await self.state_of(master)
                return bool(state.get("leader")) and state["leader"] == state["pid"]
        return False

    async def wait_for_leader(self, timeout_s: float = 30.0, *, other_than: ButteProcess | None = None) -> ButteProcess:
        """Wait until a master (not ``other_than``) leads; return it.

        Raises:
            WaitTimeout: none did in time.
        """

        async def elected() -> ButteProcess | None:
            found = await self.leader()
            return found if found is not None and found is not other_than else None

        return await until(elected, timeout=timeout_s, what="a master to be elected")

    async def wait_for_agents(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until a leader lists every running agent as active; return the leader's state.

        Raises:
            WaitTimeout: they did not all register in time.
        """
        wanted = sum(1 for agent in self.agents if agent.running)

        async def registered() -> dict[str, Any] | None:
            leader = await self.leader()
            if leader is None:
                return None
            state = await self.state_of(leader)
            return state if sum(1 for s in state["slaves"] if s.get("active")) >= wanted else None

        return await until(registered, timeout=timeout_s, what="every agent to register", ignore=NOT_YET)

    async def kill_master(self, master: ButteProcess, sig: int = signal.SIGKILL) -> None:
        """Signal a master (SIGKILL by default) and wait for it to exit."""
        master.send_signal(sig)
        await master.wait_exit(10.0)
