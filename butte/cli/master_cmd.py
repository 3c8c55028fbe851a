"""``butte master``: run a master (standalone, SQLite under ``--work_dir``; or elected in ZooKeeper, ``--zk``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import time
import uuid

from aiohttp import web

from butte.cli.flags import add_flag, duration
from butte.core.errors import ButteError, ValidationError
from butte.core.resources import Resources
from butte.master.api.app import build_app
from butte.master.health import AgentHealth, RemovalRateLimit, parse_removal_rate
from butte.master.leadership.backends import open_backends
from butte.master.leadership.role import MasterRole
from butte.master.service import MasterService
from butte.master.state import MasterConfig, MasterState
from butte.wire.base import encode

log = logging.getLogger("butte.master")


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``butte master``, with Mesos's names and defaults."""
    add_flag(parser, "ip", default="127.0.0.1", help="IP address to listen on")
    add_flag(parser, "port", default=5050, type=int, help="port to listen on")
    add_flag(parser, "hostname", default=None, help="hostname to advertise (default: the IP)")
    add_flag(parser, "work_dir", default=None, required=False, help="where the registry is kept (required)")
    add_flag(parser, "allocation_interval", default="1secs", type=duration, help="batch allocation interval")
    add_flag(parser, "offer_timeout", default=None, type=duration, help="rescind offers held longer than this")
    add_flag(parser, "weights", default="", help="role weights: role1=2,role2=0.5")
    add_flag(parser, "roles", default=None, help="comma-separated whitelist of roles (deprecated in Mesos)")
    add_flag(parser, "agent_ping_timeout", default="15secs", type=duration, help="interval between agent pings")
    add_flag(parser, "max_agent_ping_timeouts", default=5, type=int, help="missed pings before an agent is lost")
    add_flag(parser, "agent_removal_rate_limit", default=None, type=removal_rate, help="e.g. 1/10mins (none: no limit)")
    add_flag(parser, "agent_reregister_timeout", default="10mins", type=duration, help="reregistration window")
    add_flag(parser, "min_allocatable_resources", default="cpus:0.01|mem:32", help="smallest offer worth making")
    add_flag(parser, "seed", default=None, type=int, help="seed of the allocator's shuffle (for replay)")
    add_flag(parser, "zk", default=None, help="zk://host1:port1,host2:port2/path: elect a leader in ZooKeeper")
    add_flag(parser, "quorum", default=None, type=int, help="masters needed for a quorum (the ensemble decides)")
    add_flag(parser, "zk_session_timeout", default="10secs", type=duration, help="ZooKeeper session timeout")
    add_flag(parser, "recovery_agent_removal_limit", default="100%", type=percentage, help="see MasterRole")
    add_flag(parser, "registry_gc_interval", default="15mins", type=duration, help="how often to prune the registry")
    add_flag(parser, "registry_max_agent_age", default="2weeks", type=duration, help="prune agents lost longer ago")
    add_flag(parser, "registry_max_agent_count", default=102400, type=int, help="unreachable (and gone) agents kept")


def percentage(text: str) -> float:
    """argparse type for ``--recovery_agent_removal_limit``: ``"50%"`` -> 0.5.

    Raises:
        argparse.ArgumentTypeError: not a percentage from 0% to 100%.
    """
    try:
        value = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0% to 100%, got {text!r}")
    return value


def removal_rate(text: str) -> RemovalRateLimit:
    """argparse type for ``--agent_removal_rate_limit``.

    Raises:
        argparse.ArgumentTypeError: not ``N/duration``.
    """
    try:
        return parse_removal_rate(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_weights(text: str) -> dict[str, float]:
    """``role1=2,role2=0.5`` into a dict.

    Raises:
        ValidationError: an entry is not ``role=positive number``.
    """
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not role or weight <= 0:
            raise ValidationError("weights", f"expected role=positive number, got {item!r}")
        weights[role] = weight
    return weights


def build_config(args: argparse.Namespace) -> MasterConfig:
    """The core's configuration from the flags.

    Raises:
        ValidationError: a flag value is malformed.
    """
    roles = frozenset(r.strip() for r in args.roles.split(",") if r.strip()) if args.roles else None
    minimum = Resources.parse(args.min_allocatable_resources.split("|")[0].replace(",", ";"))
    return MasterConfig(
        master_id=str(uuid.uuid4()),
        ip=args.ip,
        port=args.port,
        hostname=args.hostname or args.ip,
        weights=parse_weights(args.weights),
        roles=roles,
        offer_timeout_s=args.offer_timeout,
        agent_ping_timeout_s=args.agent_ping_timeout,
        max_agent_ping_timeouts=args.max_agent_ping_timeouts,
        min_allocatable=minimum,
        registry_gc_interval_s=args.registry_gc_interval,
        registry_max_agent_age_s=args.registry_max_agent_age,
        registry_max_agent_count=args.registry_max_agent_count,
    )


def run(args: argparse.Namespace) -> int:
    """Run the master until SIGINT or SIGTERM."""
    if not args.work_dir and not args.zk:
        log.error("--work_dir is required without --zk")
        return 2
    try:
        config = build_config(args)
    except ValidationError as exc:
        log.error("bad flag: %s", exc)
        return 2
    asyncio.run(_serve(args, config))
    return 0


async def _serve(args: argparse.Namespace, config: MasterConfig) -> None:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    start_time = time.time()

    def fresh_state() -> MasterState:
        return MasterState(config, random.Random(seed), start_time=start_time)

    state = fresh_state()
    try:
        registry, contender = await open_backends(
            zk=args.zk,
            work_dir=args.work_dir,
            master_info_json=encode(state.master_info),
            session_timeout_s=args.zk_session_timeout,
        )
    except ButteError as exc:
        log.error("cannot start: %s", exc)
        return
    health = AgentHealth(config.agent_ping_timeout_s, config.max_agent_ping_timeouts, args.agent_removal_rate_limit)
    service = MasterService(state, registry, allocation_interval_s=args.allocation_interval, agent_health=health)
    role = MasterRole(
        service,
        fresh_state,
        configured_weights=config.weights,
        agent_reregister_timeout_s=args.agent_reregister_timeout,
        recovery_agent_removal_limit=args.recovery_agent_removal_limit,
    )
    flags = {k: str(v) for k, v in vars(args).items() if not k.startswith("_") and v is not None}
    runner = web.AppRunner(build_app(service, flags), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.ip, args.port, reuse_address=True)
    await site.start()
    await contender.start(role.on_view)
    log.info(
        "master %s listening on http://%s:%d (hostname %s)",
        config.master_id,
        args.ip,
        args.port,
        config.hostname,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("master shutting down")
    await contender.stop()
    await role.close()
    await service.stop()
    await runner.cleanup()
    registry.close()
