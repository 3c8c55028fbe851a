"""``butte run``: run one command task on a cluster and exit with its status, like ``mesos-execute``.

It subscribes as a framework, launches the task on the first offer that fits (declining the rest), reports
each status update on stderr, prints the task's stdout and stderr when it ends, tears the framework down
and exits with the task's exit code. Ctrl-C (or SIGTERM) kills the task; a second one tears down at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import aiohttp

from butte.cli.flags import add_flag, duration
from butte.core.errors import ButteError, ValidationError
from butte.scheduler.sandbox import LocalSandboxReader, agent_address, find_sandbox_directory, is_this_machine
from butte.scheduler.sdk import (
    CallFailed,
    ConnectionLost,
    Disconnected,
    SchedulerClient,
    SchedulerEvent,
    claim_scalars,
    command_task,
    offer_resources,
)
from butte.wire.mesos import TERMINAL_STATES, FrameworkInfo, Offer, TaskStatus

_KILL_WAIT_S: Final = 30.0
"""After Ctrl-C, how long to wait for the task to die before tearing the framework down anyway."""

_COMMAND_HELP = """the command, after `--`. One argument runs through the shell (`/bin/sh -c ARG`), so
`-- 'echo hi; exit 3'` works; several arguments are an argv run directly without a shell (shell=false),
e.g. `-- /bin/sh -c 'echo hi; exit 3'`."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``butte run`` flags."""
    parser.description = "Run one command task on a cluster and exit with its status, like mesos-execute."
    add_flag(parser, "master", help="the master, host:port (also BUTTE_MASTER)")
    add_flag(parser, "name", default="butte-run", help="task name and id (default %(default)s)")
    add_flag(parser, "cpus", default=0.1, type=float, help="CPUs for the task (default %(default)s)")
    add_flag(parser, "mem", default=32.0, type=float, help="memory for the task in MB (default %(default)s)")
    add_flag(parser, "disk", default=0.0, type=float, help="disk for the task in MB (default %(default)s)")
    add_flag(parser, "role", default="*", help="the framework's role (default %(default)s)")
    add_flag(parser, "user", default=None, help="user to run the task as (default: the current user)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="task environment, repeatable")
    add_flag(
        parser,
        "subscribe_timeout",
        default="30secs",
        type=duration,
        help="give up when the master cannot be reached this long (default %(default)s)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help=_COMMAND_HELP)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run and where, checked."""

    master: str
    name: str
    command: str | list[str]
    cpus: float = 0.1
    mem_mb: float = 32.0
    disk_mb: float = 0.0
    role: str = "*"
    user: str = field(default_factory=lambda: current_user())
    env: dict[str, str] = field(default_factory=dict)
    subscribe_timeout_s: float = 30.0


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The run's spec from parsed flags.

    Raises:
        ValidationError: no master, no command, or an ``--env`` without ``=``.
    """
    if not args.master:
        raise ValidationError("master", "--master (or BUTTE_MASTER) is required")
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ValidationError("command", "give the command after `--`")
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("env", f"expected K=V, got {item!r}")
        env[key] = value
    return RunSpec(
        master=args.master,
        name=args.name,
        command=argv[0] if len(argv) == 1 else argv,
        cpus=args.cpus,
        mem_mb=args.mem,
        disk_mb=args.disk,
        role=args.role,
        user=args.user or current_user(),
        env=env,
        subscribe_timeout_s=args.subscribe_timeout,
    )


def current_user() -> str:
    """The user we run as (Mesos runs tasks as the framework's user); ``root`` if it has no name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME, as in some containers
        return "root"


def run(args: argparse.Namespace) -> int:
    """Run the task; the process exit code is the task's."""
    try:
        spec = spec_from_args(args)
    except ValidationError as exc:
        print(f"butte run: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run_with_signals(spec))


async def _run_with_signals(spec: RunSpec) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    return await run_task(spec, interrupted=interrupted)


async def run_task(
    spec: RunSpec, *, interrupted: asyncio.Event | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Subscribe, run the task to its end, print its output, tear down; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    async with SchedulerClient(spec.master, framework_info(spec)) as client:
        try:
            subscribed = await client.subscribe(timeout_s=spec.subscribe_timeout_s)
        except ButteError as exc:
            print(f"Failed to subscribe: {exc}", file=err)
            return 1
        print(f"Subscribed with ID {subscribed.framework_id.value}", file=err)
        one_task = OneTask(client, spec, err)
        final = await one_task.run(interrupted or asyncio.Event())
        with contextlib.suppress(ButteError):
            await client.teardown()
    if final is None:
        return 1
    if one_task.agent is not None:
        await print_sandbox(one_task, final, out, err)
    return exit_code(final)


def framework_info(spec: RunSpec) -> FrameworkInfo:
    """The framework ``butte run`` subscribes as: no failover, so the master kills the task if we die."""
    info = FrameworkInfo(user=spec.user, name=f"butte run {spec.name}")
    if spec.role != "*":
        info.role = spec.role
    return info


class OneTask:
    """Drives one task from offer to terminal update."""

    def __init__(self, client: SchedulerClient, spec: RunSpec, err: TextIO) -> None:
        self.client = client
        self.spec = spec
        self.err = err
        self.agent: str | None = None  # host:port of the agent running the task
        self.agent_id: str | None = None
        self._tearing_down = False

    async def run(self, interrupted: asyncio.Event) -> TaskStatus | None:
        """The task's terminal status, or None if the framework ended first."""
        watcher = asyncio.create_task(self._on_interrupt(interrupted))
        try:
            return await self._follow_events()
        except CallFailed as exc:
            print(f"The master refused a call: {exc}", file=self.err)
            return None
        finally:
            if not self._tearing_down:  # let a teardown in progress finish: it closes the session
                watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow_events(self) -> TaskStatus | None:
        async for event in self.client.events():
            try:
                final = await self._handle(event)
            except Disconnected as exc:  # the stream broke under a call; the SDK resubscribes
                print(f"Call failed while disconnected: {exc}", file=self.err)
                continue
            if final is not None:
                return final
        return None

    async def _handle(self, event: SchedulerEvent) -> TaskStatus | None:
        if isinstance(event, ConnectionLost):
            print(f"Disconnected from the master ({event.reason}); resubscribing", file=self.err)
        elif event.type == "SUBSCRIBED" and self.agent_id is not None:
            print("Resubscribed; reconciling the task", file=self.err)
            await self.client.reconcile([(self.spec.name, self.agent_id)])
        elif event.offers is not None:
            await self._consider_offers(event.offers.offers)
        elif event.update is not None and event.update.status.task_id.value == self.spec.name:
            status = event.update.status
            print_status(status, self.spec.name, self.err)
            return status if status.state in TERMINAL_STATES else None
        elif event.error is not None:
            print(f"The master ended the framework: {event.error.message}", file=self.err)
        return None

    async def _consider_offers(self, offers: Sequence[Offer]) -> None:
        declined = []
        for offer in offers:
            if self.agent_id is None and await self._try_launch(offer):
                continue
            declined.append(offer.id.value)
        if declined:
            await self.client.decline(declined)

    async def _try_launch(self, offer: Offer) -> bool:
        wanted = {"cpus": self.spec.cpus, "mem": self.spec.mem_mb, "disk": self.spec.disk_mb}
        found = claim_scalars(offer_resources(offer), wanted)
        if found is None:
            return False
        spec = self.spec
        task = command_task(
            spec.name, offer.agent_id.value, spec.command, name=spec.name, env=spec.env, resources=found
        )
        await self.client.launch(offer, [task])
        self.agent_id = offer.agent_id.value
        self.agent = agent_address(offer)
        print(f"Submitted task '{spec.name}' to agent '{self.agent_id}'", file=self.err)
        # One task is all we want: stop offers instead of declining them forever.
        await self.client.suppress()
        return True

    async def _on_interrupt(self, interrupted: asyncio.Event) -> None:
        await interrupted.wait()
        interrupted.clear()
        if self.agent_id is not None and await self._kill_task():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_KILL_WAIT_S):
                    await interrupted.wait()  # a second Ctrl-C stops waiting for TASK_KILLED
        print("Tearing down the framework", file=self.err)
        self._tearing_down = True
        with contextlib.suppress(ButteError):
            await self.client.teardown()
        # Nothing more is wanted from the master, and it may be gone: end the event stream (and its retries).
        await self.client.close()

    async def _kill_task(self) -> bool:
        """Ask for the task to be killed; False when the master cannot be reached (no TASK_KILLED will come)."""
        print(f"Interrupted: killing task '{self.spec.name}'", file=self.err)
        try:
            await self.client.kill(self.spec.name, self.agent_id)
        except ButteError as exc:
            print(f"Could not kill the task: {exc}", file=self.err)
            return False
        return True


def print_status(status: TaskStatus, name: str, err: TextIO) -> None:
    """One status update, in mesos-execute's words."""
    print(f"Received status update {status.state} for task '{name}'", file=err)
    for label, value in (("message", status.message), ("source", status.source), ("reason", status.reason)):
        if value:
            print(f"  {label}: '{value}'" if label == "message" else f"  {label}: {value}", file=err)


async def print_sandbox(one_task: OneTask, final: TaskStatus, out: TextIO, err: TextIO) -> None:
    """Copy the task's stdout and stderr here when the agent runs on this machine; else say where they are."""
    agent = one_task.agent
    framework_id = one_task.client.framework_id
    if agent is None or framework_id is None:
        return
    # Command tasks run under an executor named after the task when the update does not say otherwise.
    executor_id = final.executor_id.value if final.executor_id is not None else one_task.spec.name
    async with aiohttp.ClientSession() as session:
        directory = await find_sandbox_directory(session, agent, framework_id, executor_id)
    if directory is None:
        print(f"Cannot find the sandbox of task '{one_task.spec.name}' on agent {agent}", file=err)
        return
    if not is_this_machine(agent.rpartition(":")[0]):
        # Remote sandboxes are to be read through the agent's /files/read, once agents serve it.
        print(f"The task's output is in {directory} on agent {agent}", file=err)
        return
    reader = LocalSandboxReader()
    for name, stream in (("stdout", out), ("stderr", err)):
        data = await reader.read(directory, name)
        if data:
            stream.write(data.decode(errors="replace"))
            stream.flush()


_EXITED = re.compile(r"exited with status (\d+)")
_SIGNALED = re.compile(r"terminated with signal ([A-Za-z0-9 ]+?)(?:\s*\(|$)")


def exit_code(status: TaskStatus) -> int:
    """0 for TASK_FINISHED, N for "Command exited with status N", 128+signal for "... terminated with
    signal S", 1 otherwise."""
    if status.state == "TASK_FINISHED":
        return 0
    message = status.message or ""
    exited = _EXITED.search(message)
    if exited is not None:
        return int(exited.group(1))
    signaled = _SIGNALED.search(message)
    if signaled is not None:
        signum = signal_number(signaled.group(1).strip())
        if signum is not None:
            return 128 + signum
    return 1


def signal_number(text: str) -> int | None:
    """The number of a signal given as ``9``, ``KILL``, ``SIGKILL`` or its description (``Killed``)."""
    if text.isdigit():
        return int(text)
    for sig in signal.Signals:
        if text.upper() in (sig.name, sig.name.removeprefix("SIG")) or text == signal.strsignal(sig):
            return int(sig)
    return None
