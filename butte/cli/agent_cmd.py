"""``butte agent``: run an agent (Mesos's ``mesos-agent``), with Mesos's flag names and defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket

from butte.agent.config import AgentConfig
from butte.agent.service import Agent
from butte.cli.flags import add_flag, boolean, duration
from butte.containerizer.fetcher_cache import parse_bytes
from butte.containerizer.isolators.detect import parse_isolation
from butte.core.errors import ValidationError
from butte.core.resources import Attributes, Resources, detect_host_resources

log = logging.getLogger("butte.agent")

_SHOWN_FLAGS = (
    "master",
    "work_dir",
    "ip",
    "port",
    "hostname",
    "resources",
    "attributes",
    "switch_user",
    "executor_shutdown_grace_period",
    "executor_registration_timeout",
    "registration_backoff_factor",
    "recover",
    "strict",
    "gc_delay",
    "isolation",
    "cgroups_root",
    "cgroups_enable_cfs",
    "fetcher_cache_dir",
    "fetcher_cache_size",
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the agent's flags."""
    add_flag(parser, "master", help="the master: host:port, or zk://host1:port1,.../path to follow the leader")
    add_flag(parser, "work_dir", help="where sandboxes and agent metadata live")
    add_flag(parser, "ip", default="127.0.0.1", help="address to listen on")
    add_flag(parser, "port", default="5051", type=int, help="port to listen on (0 picks a free one)")
    add_flag(parser, "hostname", default=None, help="hostname to advertise (default: this host's name)")
    add_flag(parser, "resources", default=None, help="e.g. 'cpus:4;mem:2048;disk:10000;ports:[31000-32000]'")
    add_flag(parser, "attributes", default="", help="e.g. 'rack:a;zone:1'")
    add_flag(parser, "switch_user", default="true", type=boolean, help="run tasks as their user (when root)")
    add_flag(parser, "executor_shutdown_grace_period", default="5secs", type=duration)
    add_flag(parser, "executor_registration_timeout", default="1mins", type=duration)
    add_flag(parser, "executor_reregistration_timeout", default="2secs", type=duration)
    add_flag(parser, "recovery_timeout", default="15mins", type=duration)
    add_flag(parser, "registration_backoff_factor", default="1secs", type=duration)
    add_flag(parser, "recover", default="reconnect", choices=("reconnect", "cleanup"), help="reattach or kill")
    add_flag(parser, "strict", default="true", type=boolean, help="any recovery error is fatal")
    add_flag(parser, "gc_delay", default="1weeks", type=duration, help="keep ended sandboxes this long")
    add_flag(parser, "disk_watch_interval", default="1mins", type=duration)
    add_flag(parser, "gc_disk_headroom", default="0.1", type=float)
    add_flag(parser, "isolation", default="posix/cpu,posix/mem", help="e.g. cgroups/cpu,cgroups/mem,namespaces/pid")
    add_flag(parser, "cgroups_root", default="butte", help="containers' cgroups go under this name")
    add_flag(parser, "cgroups_enable_cfs", default="false", type=boolean, help="hard cpu limits (CFS quota)")
    add_flag(parser, "fetcher_cache_dir", default="", help="where cached URIs live (default: <work_dir>/fetch)")
    add_flag(parser, "fetcher_cache_size", default="2GB", type=byte_size, help="cache bound, e.g. 2GB, 512MB")


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT (exit 0) or a SHUTDOWN from the master (exit 1)."""
    try:
        config = build_config(args)
    except ValidationError as exc:
        log.error("Invalid flags: %s", exc)
        return 2
    return asyncio.run(_serve(config))


def build_config(args: argparse.Namespace) -> AgentConfig:
    """The agent's settings from parsed flags; resources not given are detected as Mesos does.

    Raises:
        ValidationError: --master or --work_dir is missing, or --resources/--attributes do not parse.
    """
    if not args.master:
        raise ValidationError("master", "--master is required")
    if not args.work_dir:
        raise ValidationError("work_dir", "--work_dir is required")
    os.makedirs(args.work_dir, exist_ok=True)
    work_dir = os.path.abspath(args.work_dir)
    parse_isolation(args.isolation)  # an unknown isolator is a flag error, as in Mesos
    return AgentConfig(
        master=args.master,
        work_dir=work_dir,
        resources=agent_resources(args.resources, work_dir),
        attributes=Attributes.parse(args.attributes or ""),
        ip=args.ip,
        port=int(args.port),
        hostname=args.hostname or socket.gethostname(),
        switch_user=bool(args.switch_user),
        executor_shutdown_grace_period_s=float(args.executor_shutdown_grace_period),
        executor_registration_timeout_s=float(args.executor_registration_timeout),
        executor_reregistration_timeout_s=float(args.executor_reregistration_timeout),
        recovery_timeout_s=float(args.recovery_timeout),
        registration_backoff_factor_s=float(args.registration_backoff_factor),
        recover=args.recover,
        strict=bool(args.strict),
        gc_delay_s=float(args.gc_delay),
        disk_watch_interval_s=float(args.disk_watch_interval),
        gc_disk_headroom=float(args.gc_disk_headroom),
        isolation=args.isolation,
        cgroups_root=args.cgroups_root,
        cgroups_enable_cfs=bool(args.cgroups_enable_cfs),
        fetcher_cache_dir=os.path.abspath(args.fetcher_cache_dir) if args.fetcher_cache_dir else "",
        fetcher_cache_size_bytes=int(args.fetcher_cache_size),
        flags={name: str(getattr(args, name)) for name in _SHOWN_FLAGS if getattr(args, name) is not None},
    )


def agent_resources(text: str | None, work_dir: str) -> Resources:
    """``--resources``, with cpus, mem, disk and ports it does not name taken from the host.

    Raises:
        ValidationError: the flag does not parse.
    """
    given = Resources.parse(text) if text else Resources.empty()
    page_size = os.sysconf("SC_PAGE_SIZE")
    mem_total_mb = page_size * os.sysconf("SC_PHYS_PAGES") / (1024 * 1024)
    disk_total_mb = shutil.disk_usage(work_dir).total / (1024 * 1024)
    detected = detect_host_resources(os.cpu_count() or 1, mem_total_mb, disk_total_mb)
    named = given.names()
    return given + Resources.from_entries(entry for entry in detected.entries() if entry.name not in named)


def byte_size(text: str) -> int:
    """argparse type for stout byte sizes (``2GB``).

    Raises:
        argparse.ArgumentTypeError: not a byte size.
    """
    try:
        return parse_bytes(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


async def _serve(config: AgentConfig) -> int:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    return await agent.run()
