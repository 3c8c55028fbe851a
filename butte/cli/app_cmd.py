"""``butte app``: deploy and manage apps on any Marathon-compatible server through its v2 REST API.

``deploy``, ``scale``, ``restart`` and ``remove`` start a Marathon deployment and then follow it, polling
``/v2/deployments`` and the app, printing a line whenever the progress changes, until the deployment is gone
(exit 0). Marathon never gives up on a deployment by itself (it retries with backoff forever), so on
``--timeout`` the command explains what blocks it from ``/v2/queue?embed=lastUnusedOffers`` and the app's
last task failure, and exits 1; the deployment keeps running in Marathon.

Only :class:`MarathonApi` talks to the network; the formatting lives in :mod:`butte.cli.app_progress`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import aiohttp
import msgspec
import yaml

from butte.cli.app_progress import (
    AppView,
    format_app,
    format_apps,
    format_counts,
    format_tasks,
    progress_line,
    stuck_reasons,
)
from butte.cli.flags import duration
from butte.cli.marathon_client import (
    REQUEST_TIMEOUT_S,
    MarathonApi,
    absolute_id,
    app_path,
)
from butte.core.errors import ButteError, ValidationError

DEFAULT_URL: Final = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class AppDefinition:
    """An app definition read from a file: its absolute id and the JSON to send."""

    app_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Console:
    """Where the command writes: results and progress to ``out``, errors and reasons to ``err``."""

    out: TextIO
    err: TextIO

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.err, flush=True)


# --- following a deployment ----------------------------------------------------------------------------------


async def follow(
    api: MarathonApi, deployment_id: str | None, app_id: str, args: argparse.Namespace, io: Console
) -> int:
    """Print progress until the deployment is gone (0), or explain why it is stuck at the deadline (1).

    Raises:
        CannotReach, MarathonHttpError, BadReply: from the polls.
    """
    if deployment_id is None:
        io.say(f"{app_id}: Marathon started no deployment")
        return 0
    io.say(f"deployment {deployment_id} started for {app_id}")
    if args.no_wait:
        return 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    last_line = ""
    while True:
        current = next((d for d in await api.deployments() if d.id == deployment_id), None)
        app = await api.app_or_none(app_id)
        if current is None:
            return report_finished(deployment_id, app_id, app, io)
        line = progress_line(current, app)
        if line != last_line:
            io.say(line)
            last_line = line
        left_s = deadline - loop.time()
        if left_s <= 0:
            return await report_stuck(api, deployment_id, app_id, app, args.timeout, io)
        await asyncio.sleep(min(args.interval, left_s))


def report_finished(deployment_id: str, app_id: str, app: AppView | None, io: Console) -> int:
    """A deployment left the list: finished, or replaced (force, rollback) by another on the same app."""
    if app is None:
        io.say(f"deployment {deployment_id} finished: {app_id} no longer exists")
        return 0
    others = [d.id for d in app.deployments if d.id != deployment_id]
    if others:
        io.warn(
            f"deployment {deployment_id} ended, but {app_id} is now in deployment {', '.join(others)} "
            "(it was replaced by a forced change or rolled back)"
        )
        return 1
    io.say(f"deployment {deployment_id} finished: {app_id} {format_counts(app)}")
    return 0


async def report_stuck(
    api: MarathonApi, deployment_id: str, app_id: str, app: AppView | None, timeout_s: float, io: Console
) -> int:
    """Explain from the launch queue and the app's last failure why the deployment has not finished."""
    item = next((q for q in await api.queue() if q.app is not None and q.app.id == app_id), None)
    io.warn(f"deployment {deployment_id} did not finish within {timeout_s:g} s:")
    for reason in stuck_reasons(app, item):
        io.warn(f"  - {reason}")
    # Marathon keeps a stuck deployment forever (reference §A6); say how to get out of it.
    io.warn(f"it keeps running in Marathon; roll it back with DELETE /v2/deployments/{deployment_id}")
    return 1


# --- commands ------------------------------------------------------------------------------------------------


def load_app_definition(path: str) -> AppDefinition:
    """Read an app definition: JSON from ``*.json``, YAML otherwise (``-`` is stdin, JSON or YAML).

    Raises:
        ValidationError: unreadable, not a mapping, or without an ``id``.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        data = parse_definition(text, as_json=path.endswith(".json"))
    except (OSError, UnicodeDecodeError, msgspec.DecodeError, yaml.YAMLError) as exc:
        raise ValidationError("file", f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError("file", f"{path} does not hold one app definition (a JSON/YAML object)")
    raw_id = data.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip("/"):
        raise ValidationError("id", f"{path} has no app id")
    app_id = absolute_id(raw_id)
    try:
        body = msgspec.json.encode({**data, "id": app_id})
    except TypeError as exc:
        raise ValidationError("file", f"{path} holds a value JSON cannot carry: {exc}") from exc
    return AppDefinition(app_id, body)


def parse_definition(text: str, *, as_json: bool) -> object:
    """JSON, or YAML (tried after JSON unless ``as_json``: tab-indented JSON is not valid YAML).

    Raises:
        msgspec.DecodeError, yaml.YAMLError: neither parses.
    """
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        if as_json:
            raise
        return yaml.safe_load(text)


def flag(value: bool) -> str:
    return "true" if value else "false"


async def deploy(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    """POST a new app (201) or PUT over an existing one, then follow the deployment."""
    definition = load_app_definition(args.file)
    force = {"force": flag(args.force)}
    if await api.app_or_none(definition.app_id) is None:
        deployment_id = await api.change("POST", "/v2/apps", params=force, body=definition.body)
    else:
        # The file is the whole definition: without partialUpdate=false Marathon 1.5+ would merge it into
        # the stored one, keeping fields the file dropped.
        params = {**force, "partialUpdate": "false"}
        deployment_id = await api.change("PUT", app_path(definition.app_id), params=params, body=definition.body)
    return await follow(api, deployment_id, definition.app_id, args, io)


async def scale(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    """A partial PUT of ``instances`` (Marathon makes it a ScaleApplication step), then follow."""
    app_id = absolute_id(args.app_id)
    body = msgspec.json.encode({"instances": args.instances})
    deployment_id = await api.change("PUT", app_path(app_id), params={"force": flag(args.force)}, body=body)
    return await follow(api, deployment_id, app_id, args, io)


async def restart(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    """A rolling restart that respects the app's upgrade strategy, then follow."""
    app_id = absolute_id(args.app_id)
    deployment_id = await api.change("POST", app_path(app_id) + "/restart", params={"force": flag(args.force)})
    return await follow(api, deployment_id, app_id, args, io)


async def remove(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    """Destroy the app, then follow. Marathon's own default for ``force`` here is true, so it is only sent
    when asked for."""
    app_id = absolute_id(args.app_id)
    params = {"force": "true"} if args.force else {}
    deployment_id = await api.change("DELETE", app_path(app_id), params=params)
    return await follow(api, deployment_id, app_id, args, io)


async def list_apps(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    io.say(format_apps(await api.apps()))
    return 0


async def show(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    app_id = absolute_id(args.app_id)
    if args.json:
        io.say(msgspec.json.format(await api.app_json(app_id), indent=2).decode())
    else:
        io.say(format_app(await api.app(app_id)))
    return 0


async def tasks(api: MarathonApi, args: argparse.Namespace, io: Console) -> int:
    app_id = absolute_id(args.app_id)
    app = await api.app(app_id)
    io.say(format_tasks(await api.tasks(app_id), checked=bool(app.health_checks)))
    return 0


Command = Callable[[MarathonApi, argparse.Namespace, Console], Awaitable[int]]


# --- the command line ----------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``butte app`` and its actions."""
    parser.description = "Deploy and manage apps on Marathon (or any server speaking its v2 REST API)."
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--marathon",
        metavar="URL",
        default=os.environ.get("BUTTE_MARATHON_URL", DEFAULT_URL),
        help="Marathon's URL (default: BUTTE_MARATHON_URL or %(default)s)",
    )
    changing = argparse.ArgumentParser(add_help=False, parents=[common])
    changing.add_argument("--force", action="store_true", help="override deployments that lock the app")
    changing.add_argument("--no-wait", dest="no_wait", action="store_true", help="do not follow the deployment")
    changing.add_argument(
        "--timeout", metavar="S", type=duration, default=300.0, help="stop following after S seconds (default 300)"
    )
    changing.add_argument(
        "--interval", metavar="S", type=duration, default=0.5, help="poll every S seconds (default 0.5)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, run: Command, parent: argparse.ArgumentParser, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[parent], help=help_text)
        sub.set_defaults(_command=run)
        return sub

    action("deploy", deploy, changing, "create or update an app from a JSON/YAML file").add_argument(
        "file", metavar="FILE"
    )
    sub = action("scale", scale, changing, "change an app's number of instances")
    sub.add_argument("app_id")
    sub.add_argument("instances", type=instance_count)
    action("restart", restart, changing, "rolling-restart an app").add_argument("app_id")
    action("remove", remove, changing, "destroy an app and kill its tasks").add_argument("app_id")
    action("list", list_apps, common, "list apps")
    sub = action("show", show, common, "describe one app")
    sub.add_argument("app_id")
    sub.add_argument("--json", action="store_true", help="print the app as Marathon returns it")
    action("tasks", tasks, common, "list an app's tasks").add_argument("app_id")


def instance_count(text: str) -> int:
    """argparse type for ``scale``'s count.

    Raises:
        argparse.ArgumentTypeError: not a whole number of at least 0.
    """
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of instances: {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """``butte app ...`` on its own (``python -m butte.cli.app_cmd``): parse ``argv`` and run it."""
    parser = argparse.ArgumentParser(prog="butte app")
    configure(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run one ``butte app`` action; 0 on success, 1 when Marathon refuses or cannot finish, 2 on bad input."""
    io = Console(sys.stdout, sys.stderr)
    try:
        return asyncio.run(execute(args, io))
    except KeyboardInterrupt:
        io.warn("interrupted; any deployment keeps running in Marathon")
        return 130


async def execute(args: argparse.Namespace, io: Console) -> int:
    """Run the action with a session to Marathon, turning errors into messages and exit codes."""
    command: Command = args._command
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            return await command(MarathonApi(session, args.marathon), args, io)
        except ValidationError as exc:
            io.warn(f"butte app: {exc}")
            return 2
        except ButteError as exc:  # CannotReach, MarathonHttpError, BadReply: already readable
            io.warn(str(exc))
            return 1


if __name__ == "__main__":
    sys.exit(main())
