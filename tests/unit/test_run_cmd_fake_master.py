"""``butte run`` against the fake master (which also plays the agent's ``/state``)."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from test_scheduler_sdk_support import FRAMEWORK_ID, FakeMaster, offer, started, status_uuid, update

from butte.cli import run_cmd
from butte.cli.run_cmd import RunSpec, exit_code, run_task, signal_number, spec_from_args
from butte.core.errors import ValidationError
from butte.wire.base import ID
from butte.wire.mesos import TaskStatus

NAME = "job"


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[FakeMaster]:
    (tmp_path / "stdout").write_text("hi\n")
    (tmp_path / "stderr").write_text("warning: something\n")
    state = {"frameworks": [{"id": FRAMEWORK_ID, "executors": [{"id": NAME, "directory": str(tmp_path)}]}]}

    async def agent_state(request: web.Request) -> web.Response:
        return web.json_response(state)

    fake = FakeMaster()
    fake.extra_routes.append(web.get("/state", agent_state))
    async with started(fake) as m:
        yield m


def agent_port(master: FakeMaster) -> int:
    return int(master.address.rpartition(":")[2])


class Run:
    """``run_task`` running in the background, with its output captured."""

    def __init__(self, master: FakeMaster, command: str | list[str] = "echo hi; exit 3") -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.interrupted = asyncio.Event()
        spec = RunSpec(master=master.address, name=NAME, command=command, user="alice", env={"A": "1"})
        self.task = asyncio.create_task(run_task(spec, interrupted=self.interrupted, out=self.out, err=self.err))

    async def exit_code(self) -> int:
        async with asyncio.timeout(5):
            return await self.task


async def launch(master: FakeMaster) -> None:
    """Offer one small and one fitting offer; expect the launch on the second, then suppress and decline."""
    stream = await master.next_stream()
    port = agent_port(master)
    await stream.send({"type": "OFFERS", "offers": {"offers": [offer("O1", cpus=0.01), offer("O2", port=port)]}})
    accept = await master.next_call()
    assert accept["type"] == "ACCEPT" and accept["accept"]["offer_ids"] == [{"value": "O2"}]
    task = accept["accept"]["operations"][0]["launch"]["task_infos"][0]
    assert task["task_id"] == {"value": NAME}
    assert task["command"]["environment"] == {"variables": [{"name": "A", "value": "1"}]}
    assert (await master.next_call())["type"] == "SUPPRESS"
    decline = await master.next_call()
    assert decline["decline"]["offer_ids"] == [{"value": "O1"}]


async def test_runs_the_task_prints_output_and_exits_with_its_status(master: FakeMaster) -> None:
    run = Run(master)
    await launch(master)
    stream = master.current_stream
    assert stream is not None
    executor = {"value": NAME}
    await stream.send(update(NAME, "TASK_RUNNING", status_uuid(1), executor_id=executor))
    message = "Command exited with status 3"
    await stream.send(update(NAME, "TASK_FAILED", status_uuid(2), executor_id=executor, message=message))
    assert await run.exit_code() == 3
    calls = [(await master.next_call())["type"] for _ in range(2)]
    assert calls == ["ACKNOWLEDGE", "TEARDOWN"]
    assert run.out.getvalue() == "hi\n"
    err = run.err.getvalue()
    assert f"Subscribed with ID {FRAMEWORK_ID}" in err
    assert f"Received status update TASK_RUNNING for task '{NAME}'" in err
    assert "  message: 'Command exited with status 3'" in err
    assert err.endswith("warning: something\n")


async def test_argv_command_is_launched_without_shell(master: FakeMaster) -> None:
    run = Run(master, command=["/bin/sh", "-c", "exit 0"])
    stream = await master.next_stream()
    await stream.send({"type": "OFFERS", "offers": {"offers": [offer("O1")]}})
    accept = await master.next_call()
    command = accept["accept"]["operations"][0]["launch"]["task_infos"][0]["command"]
    assert command["shell"] is False and command["arguments"] == ["/bin/sh", "-c", "exit 0"]
    await stream.send(update(NAME, "TASK_FINISHED", status_uuid(1)))
    assert await run.exit_code() == 0


async def test_ctrl_c_kills_the_task_then_tears_down(master: FakeMaster) -> None:
    run = Run(master)
    await launch(master)
    run.interrupted.set()
    kill = await master.next_call()
    assert kill["kill"] == {"task_id": {"value": NAME}, "agent_id": {"value": "M-S0"}}
    assert master.current_stream is not None
    killed = update(NAME, "TASK_KILLED", status_uuid(3), message="Command terminated with signal Terminated")
    await master.current_stream.send(killed)
    assert await run.exit_code() == 128 + 15
    assert (await master.next_call())["type"] == "TEARDOWN"


async def test_ctrl_c_before_launch_tears_down(master: FakeMaster) -> None:
    run = Run(master)
    await master.next_stream()
    run.interrupted.set()
    assert (await master.next_call())["type"] == "TEARDOWN"
    assert await run.exit_code() == 1


async def test_error_event_exits_1(master: FakeMaster) -> None:
    run = Run(master)
    stream = await master.next_stream()
    await stream.send({"type": "ERROR", "error": {"message": "Framework has been removed"}})
    assert await run.exit_code() == 1
    assert "Framework has been removed" in run.err.getvalue()


async def test_unreachable_master_exits_1() -> None:
    spec = RunSpec(master="127.0.0.1:1", name=NAME, command="true", user="alice", subscribe_timeout_s=0.2)
    err = io.StringIO()
    assert await run_task(spec, out=io.StringIO(), err=err) == 1
    assert "Failed to subscribe" in err.getvalue()


@pytest.mark.parametrize(
    ("state", "message", "code"),
    [
        ("TASK_FINISHED", None, 0),
        ("TASK_FAILED", "Command exited with status 3", 3),
        ("TASK_FAILED", "Command terminated with signal Killed", 137),
        ("TASK_KILLED", "Command terminated with signal 15 (pid: 12)", 143),
        ("TASK_FAILED", "Command terminated with signal SIGSEGV", 139),
        ("TASK_LOST", "Agent removed", 1),
        ("TASK_ERROR", None, 1),
    ],
)
def test_exit_code(state: str, message: str | None, code: int) -> None:
    status = TaskStatus(task_id=ID(value="t"), state=state, message=message)  # type: ignore[arg-type]
    assert exit_code(status) == code


def test_signal_number() -> None:
    assert [signal_number(s) for s in ("9", "KILL", "SIGTERM", "Killed", "Bogus")] == [9, 9, 15, 9, None]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_cmd.configure(parser)
    return parser.parse_args(argv)


def test_one_argument_is_a_shell_command_several_are_argv() -> None:
    assert spec_from_args(parse(["--master", "m:5050", "--", "echo hi; exit 3"])).command == "echo hi; exit 3"
    spec = spec_from_args(parse(["--master", "m:5050", "--env", "A=1=2", "--", "/bin/sh", "-c", "exit 3"]))
    assert spec.command == ["/bin/sh", "-c", "exit 3"]
    assert spec.env == {"A": "1=2"}


def test_flags_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTE_MASTER", "m9:5050")
    monkeypatch.setenv("BUTTE_CPUS", "2")
    spec = spec_from_args(parse(["--", "true"]))
    assert (spec.master, spec.cpus) == ("m9:5050", 2.0)


@pytest.mark.parametrize(
    "argv", [["--", "true"], ["--master", "m:5050"], ["--master", "m:5050", "--env", "NOEQUALS", "--", "x"]]
)
def test_bad_arguments(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUTTE_MASTER", raising=False)
    with pytest.raises(ValidationError):
        spec_from_args(parse(argv))
