"""``butte marathon``: the Marathon-compatible framework for long-running services, with its v2 REST API."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from butte.cli.flags import add_flag, duration
from butte.core.errors import ButteError
from butte.frameworks.marathon.api.app import make_app
from butte.frameworks.marathon.service import MarathonConfig, MarathonService
from butte.frameworks.marathon.store import open_store
from butte.master.leadership import Contender

log = logging.getLogger("butte.marathon")

GC_YOUNG_THRESHOLD = 50_000  # CPython's default is 700 allocations


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``butte marathon``, with Marathon's names and defaults."""
    add_flag(parser, "master", default="127.0.0.1:5050", help="the Mesos master: host:port or zk://.../path")
    add_flag(parser, "http_address", default="127.0.0.1", help="address the REST API listens on")
    add_flag(parser, "http_port", default=8080, type=int, help="port of the REST API")
    add_flag(parser, "hostname", default=None, help="hostname to advertise (default: the http address)")
    add_flag(parser, "work_dir", default="./.butte/marathon", help="where the SQLite store is kept")
    add_flag(parser, "zk", default=None, help="zk://host:port,.../marathon: keep state in ZooKeeper")
    add_flag(parser, "zk_session_timeout", default="10secs", type=duration, help="ZooKeeper session timeout")
    add_flag(parser, "framework_name", default="marathon", help="the framework name registered with Mesos")
    add_flag(parser, "mesos_role", default="*", help="the Mesos role Marathon registers with")
    add_flag(parser, "mesos_user", default=None, help="the user tasks run as (default: the current user)")
    add_flag(parser, "reconciliation_interval", default="10mins", type=duration, help="task reconciliation period")
    add_flag(parser, "seed", default=None, type=int, help="seed for task ids and port choices (for replay)")
    add_flag(parser, "max_instances_per_offer", default=100, type=int, help="tasks launched on one offer at most")


def build_config(args: argparse.Namespace) -> MarathonConfig:
    return MarathonConfig(
        master=args.master,
        http_port=args.http_port,
        hostname=args.hostname or args.http_address,
        framework_name=args.framework_name,
        mesos_role=args.mesos_role,
        user=args.mesos_user or "",
        reconciliation_interval_s=args.reconciliation_interval,
        zk=args.zk,
        seed=args.seed,
        max_instances_per_offer=args.max_instances_per_offer,
    )


def run(args: argparse.Namespace) -> int:
    """Run Marathon until SIGINT or SIGTERM; 1 if it could not start."""
    return asyncio.run(_serve(args, build_config(args)))


async def _serve(args: argparse.Namespace, config: MarathonConfig) -> int:
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = await open_store(work_dir, args.zk, session_timeout_s=args.zk_session_timeout)
    except ButteError as exc:
        log.error("cannot start: %s", exc)
        return 1
    service = MarathonService(config, store)
    app = make_app(service, http_port=config.http_port, advertised=config.advertised)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.http_address, args.http_port, reuse_address=True).start()
    try:
        await service.start(election(args, config))
    except ButteError as exc:
        log.error("cannot start: %s", exc)
        await runner.cleanup()
        return 1
    log.info("marathon listening on http://%s:%d, master %s", args.http_address, args.http_port, config.master)
    # Everything loaded so far lives as long as the process: keep it out of the collector's scans, and collect
    # the young generation less often, so that a full collection does not stall the REST API mid-deployment.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    deposed = asyncio.ensure_future(service.deposed.wait())
    await asyncio.wait({stopping, deposed}, return_when=asyncio.FIRST_COMPLETED)
    log.info("marathon shutting down%s", " after losing leadership" if service.deposed.is_set() else "")
    stopping.cancel()
    deposed.cancel()
    await runner.cleanup()
    await service.close()
    return 1 if service.deposed.is_set() else 0


def election(args: argparse.Namespace, config: MarathonConfig) -> Contender | None:
    """With ``--zk``, a place in the election under ``<path>/leader``; alone (None) otherwise."""
    if not args.zk:
        return None
    from butte.master.leadership.zookeeper import ZkContender  # kazoo only for Marathons that use ZooKeeper

    info = {"hostname": config.hostname, "port": config.http_port}
    return ZkContender(args.zk.rstrip("/") + "/leader", json.dumps(info).encode(), args.zk_session_timeout)
