"""Network partitions for tests: an agent in its own network namespace, behind a veth pair we can cut.

:class:`Namespace` makes a namespace ``bt-<hex>`` holding one end of a veth pair; the host keeps the other
end. Both ends get addresses of a /30 in 10.213.0.0/16 that no interface of the host already uses, so the
addresses exist only between us and our namespace. :meth:`Namespace.cut` sets the namespace's end down:
packets are lost both ways and new connections fail at once (ENETUNREACH), as a pulled cable does;
:meth:`Namespace.heal` sets it up again and the kernel restores the /30 route. Deleting the namespace
removes the pair. Needs root and iproute2; :func:`unavailable_reason` says why a machine cannot.

:class:`PartitionCluster` runs a master on the host end of the pair and one agent inside the namespace,
with the same command-line contract as :class:`~butte.testing.cluster.Cluster`.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, final

import aiohttp

from butte.testing import process as proc
from butte.testing.cluster import DEFAULT_AGENT_RESOURCES, DEFAULT_MASTER_FLAGS, HTTP_TIMEOUT, NOT_YET, flag_args
from butte.testing.ports import free_port
from butte.testing.process import ButteProcess, ProcessError
from butte.testing.wait import until

# A block private to these tests; each namespace takes one /30 of it.
_POOL = ipaddress.IPv4Network("10.213.0.0/16")


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def _ip(*args: str) -> str:
    """Run ``ip ARGS``; its output.

    Raises:
        NetnsError: it failed (the message has its stderr).
    """
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why this machine cannot run partition tests, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (the `ip` command) is not installed"
    probe = f"bt-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    return None


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    found: list[ipaddress.IPv4Network] = []
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            found.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    return found


def _free_network(rng: random.Random) -> ipaddress.IPv4Network:
    """A /30 of the pool that overlaps no address of the host.

    Raises:
        NetnsError: none found after many tries.
    """
    used = _networks_in_use()
    subnets = 2 ** (30 - _POOL.prefixlen)
    for _ in range(1000):
        network = ipaddress.IPv4Network(f"{_POOL.network_address + 4 * rng.randrange(subnets)}/30")
        if not any(network.overlaps(other) for other in used):
            return network
    raise NetnsError("no free /30 in 10.213.0.0/16")


@final
class Namespace:
    """One namespace linked to the host by a veth pair on a private /30."""

    def __init__(self, tag: str, network: ipaddress.IPv4Network) -> None:
        self.name = f"bt-{tag}"
        self.host_if, self.ns_if = f"bt{tag}h", f"bt{tag}n"  # interface names stay under 16 bytes
        first, second = list(network.hosts())
        self.host_ip, self.ns_ip = str(first), str(second)
        self.prefix = network.prefixlen

    @classmethod
    def create(cls) -> Namespace:
        """Make the namespace, the pair and the addresses; undone on failure.

        Raises:
            NetnsError: an ``ip`` command failed.
        """
        tag = uuid.uuid4().hex[:8]
        namespace = cls(tag, _free_network(random.Random(tag)))
        try:
            namespace._build()
        except NetnsError:
            namespace.delete()
            raise
        return namespace

    def _build(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/{self.prefix}", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/{self.prefix}", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", "lo", "up")
        self.heal()

    def cut(self) -> None:
        """Partition: the namespace's end of the pair goes down."""
        _ip("-n", self.name, "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        """End the partition."""
        _ip("-n", self.name, "link", "set", self.ns_if, "up")

    def delete(self) -> None:
        """Remove the namespace (and with it the pair); nothing happens if it is already gone."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.delete()


class _NamespacedAgent:
    """A ``butte agent`` child run inside a namespace (``ip netns exec`` execs it, so the pid is the agent's)."""

    def __init__(self, namespace: Namespace, argv: Sequence[str], work_dir: Path, env: dict[str, str]) -> None:
        self.command = namespace.wrap([sys.executable, "-m", "butte.cli.main", *argv])
        self.work_dir = work_dir
        self.log_path = work_dir / "agent.log"
        self._env = env
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while it has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Start it, logging to ``agent.log`` in its work dir."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=self._env,
                start_new_session=True,
            )

    def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self._popen is not None:
            proc.terminate(self._popen, grace_s)


@final
class PartitionCluster:
    """A master on the host end of a namespace's veth pair and one agent inside the namespace."""

    def __init__(
        self,
        namespace: Namespace,
        work_dir: Path,
        *,
        master_flags: Mapping[str, object] | None = None,
        agent_flags: Mapping[str, object] | None = None,
        agent_resources: str = DEFAULT_AGENT_RESOURCES,
    ) -> None:
        self.namespace = namespace
        self.work_dir = work_dir
        self.marker = uuid.uuid4().hex
        env = proc.child_environment(self.marker)
        port, agent_port = free_port(), free_port()
        self.master_address = f"{namespace.host_ip}:{port}"
        self.master_url = f"http://{self.master_address}"
        argv = ["master", f"--ip={namespace.host_ip}", f"--port={port}", f"--work_dir={work_dir / 'master'}"]
        argv += flag_args({**DEFAULT_MASTER_FLAGS, **(master_flags or {})})
        self.master = ButteProcess("master", argv, port, work_dir / "master", env)
        agent_argv = ["agent", f"--master={self.master_address}", f"--ip={namespace.ns_ip}", f"--port={agent_port}"]
        agent_argv += [f"--work_dir={work_dir / 'agent'}", f"--resources={agent_resources}"]
        agent_argv += flag_args(agent_flags or {})
        self.agent = _NamespacedAgent(namespace, agent_argv, work_dir / "agent", env)

    async def __aenter__(self) -> PartitionCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the master, then the agent, and wait until the agent is registered.

        Raises:
            ProcessError: the master or the agent exited (with a log tail).
            WaitTimeout: one of them did not come up in time.
        """
        self.master.start()
        await until(self._healthy, timeout=30, what="the master to answer /health", ignore=NOT_YET)
        self.agent.start()
        await self.wait_for_agent()

    async def wait_for_agent(self, timeout: float = 30.0) -> str:
        """Wait until the master lists the agent as active; its id.

        Raises:
            ProcessError: the agent exited (with its log tail).
            WaitTimeout: it was not listed in time.
        """

        async def listed() -> str | None:
            if not self.agent.running:
                raise ProcessError(f"agent exited\n{proc.read_tail(self.agent.log_path)}")
            slaves = (await self.master_state())["slaves"]
            return next((s["id"] for s in slaves if s["active"]), None)

        agent_id: str = await until(listed, timeout=timeout, what="the agent to be listed active", ignore=NOT_YET)
        return agent_id

    async def stop(self) -> None:
        """Stop the agent and the master, then kill whatever they left running (only what we started)."""
        self.agent.stop(grace_s=5.0)
        await self.master.stop(grace_s=5.0)
        proc.kill_leftovers_now(self.marker, [self.work_dir])

    def cut(self) -> None:
        """Partition the agent from the master."""
        self.namespace.cut()

    def heal(self) -> None:
        """Reconnect the agent."""
        self.namespace.heal()

    async def _healthy(self) -> bool:
        if not self.master.running:
            raise self.master.error("the master exited")
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
            session.get(f"{self.master_url}/health") as r,
        ):
            return r.status == 200

    async def master_state(self) -> dict[str, Any]:
        """``GET /master/state``."""
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
            session.get(f"{self.master_url}/master/state") as response,
        ):
            response.raise_for_status()
            state: dict[str, Any] = await response.json(content_type=None)
            return state
