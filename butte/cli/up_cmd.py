"""``butte up``: one master, a few agents and Marathon on this machine, in the foreground, until Ctrl-C.

It runs the same process management as the test kit (:class:`butte.testing.Cluster`) on fixed ports
(5050 for the master, 5051 and up for the agents), keeps state and logs under ``--work_dir``, and on
SIGINT/SIGTERM/SIGHUP stops the agents, the master and whatever tasks they left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TextIO

from butte.cli.flags import add_flag
from butte.core.resources import DEFAULT_PORTS
from butte.testing.cluster import Cluster
from butte.testing.marathon import MarathonKit
from butte.testing.process import ProcessError
from butte.testing.wait import until

log = logging.getLogger("butte.up")

# Each agent gets its own slice of the Mesos default port range, so two agents never offer the same port.
PORTS_PER_AGENT = 500
FIRST_TASK_PORT = DEFAULT_PORTS[0]


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``butte up``."""
    add_flag(parser, "work_dir", default="./.butte", help="state and logs of every process")
    add_flag(parser, "port", default=5050, type=int, help="master port")
    add_flag(parser, "agents", default=2, type=int, help="number of agents")
    add_flag(parser, "agent_port", default=5051, type=int, help="port of the first agent; the next ones follow")
    add_flag(parser, "marathon_port", default=8080, type=int, help="Marathon's REST API port (0: no Marathon)")
    add_flag(
        parser,
        "agent_resources",
        default=None,
        help="resources of every agent (default: all cores, 2048 MB, 10000 MB disk, 500 ports each)",
    )


def default_resources(index: int) -> str:
    """Resources of agent ``index`` when none are given: the host's cores and a port range of its own."""
    low = FIRST_TASK_PORT + index * PORTS_PER_AGENT
    cpus = os.cpu_count() or 1
    return f"cpus:{cpus};mem:2048;disk:10000;ports:[{low}-{low + PORTS_PER_AGENT - 1}]"


def busy_ports(ports: list[int]) -> list[int]:
    """The ports among ``ports`` that something already listens on at 127.0.0.1."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def build_cluster(args: argparse.Namespace) -> Cluster:
    """The cluster that the flags describe."""
    agent_ports = [args.agent_port + i for i in range(args.agents)]
    resources = args.agent_resources or [default_resources(i) for i in range(args.agents)]
    return Cluster(
        args.agents,
        agent_resources=resources,
        # Mesos's own default allocation interval, not the kit's quicker one.
        master_flags={"allocation_interval": None},
        work_dir=Path(args.work_dir).resolve(),
        master_port=args.port,
        agent_ports=agent_ports,
    )


def run(args: argparse.Namespace) -> int:
    """Run the cluster until SIGINT or SIGTERM; 0 after a clean stop, 1 if something failed."""
    if args.agents < 0:
        print("butte up: --agents must be 0 or more", file=sys.stderr)
        return 2
    wanted = [args.port, *(args.agent_port + i for i in range(args.agents))]
    busy = busy_ports(wanted + ([args.marathon_port] if args.marathon_port else []))
    if busy:
        print(f"butte up: port(s) {busy} already in use (is another `butte up` running?)", file=sys.stderr)
        return 1
    cluster = build_cluster(args)
    marathon = MarathonKit(cluster, port=args.marathon_port) if args.marathon_port else None
    return asyncio.run(_up(cluster, marathon))


async def _up(cluster: Cluster, marathon: MarathonKit | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP: the terminal was closed; stop as cleanly as on Ctrl-C rather than orphan the children.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    try:
        if not await _start_unless_stopped(cluster, marathon, stop):
            return 0
        print_banner(cluster, marathon)
        return await _serve_until_stopped(cluster, marathon, stop)
    except ProcessError as exc:
        say(f"butte up: {exc}", sys.stderr)
        return 1
    finally:
        say("butte up: stopping")
        if marathon is not None:
            await marathon.stop()
        await cluster.stop()
        say("butte up: stopped")


def say(text: str, stream: TextIO | None = None) -> None:
    """Print, but never let a closed terminal or pipe (``butte up | tee``) stand in the way of a clean stop."""
    with contextlib.suppress(OSError):
        print(text, file=stream or sys.stdout, flush=True)


async def _start_all(cluster: Cluster, marathon: MarathonKit | None) -> None:
    await cluster.start()
    if marathon is not None:
        await marathon.start()


async def _start_unless_stopped(cluster: Cluster, marathon: MarathonKit | None, stop: asyncio.Event) -> bool:
    """Start the cluster and Marathon; a Ctrl-C during start-up abandons them. True if they are up."""
    starting = asyncio.ensure_future(_start_all(cluster, marathon))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if starting.done():
        starting.result()
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return False


async def _serve_until_stopped(cluster: Cluster, marathon: MarathonKit | None, stop: asyncio.Event) -> int:
    """Wait for a stop signal; if a process dies first, report it with its log tail and return 1."""
    children = [cluster.master, *cluster.agents, *([marathon.process] if marathon else [])]
    await until(
        lambda: stop.is_set() or any(not child.running for child in children),
        timeout=float("inf"),
        interval=0.5,
        what="a stop signal",
    )
    dead = [child for child in children if not child.running]
    if stop.is_set() or not dead:
        return 0
    for child in dead:
        say(str(child.error(f"butte up: {child.name} exited with status {child.returncode}")), sys.stderr)
    return 1


def print_banner(cluster: Cluster, marathon: MarathonKit | None = None) -> None:
    """Where everything is, and how to run a first task."""
    agents = ", ".join(agent.address for agent in cluster.agents) or "none"
    marathon_line = f"  marathon: {marathon.url}\n" if marathon is not None else ""
    service_hint = (
        f"Run a service (a Marathon app definition in JSON or YAML):\n"
        f"  butte app deploy app.yaml --marathon {marathon.url}\n"
        if marathon is not None
        else ""
    )
    say(
        f"Butte is up.\n"
        f"  master: {cluster.master_url}\n"
        f"  agents: {agents}\n"
        f"{marathon_line}"
        f"  state and logs: {cluster.work_dir}\n"
        f"Run a task:\n"
        f"  butte run --master {cluster.master_address} -- echo hello\n"
        f"  (without an activated venv: .venv/bin/butte run --master {cluster.master_address} -- echo hello)\n"
        f"{service_hint}"
        f"Press Ctrl-C to stop."
    )
