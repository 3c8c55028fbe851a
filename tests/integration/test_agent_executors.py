"""Custom executors under a real agent: the executor API end to end, with a scripted master."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
from test_agent_service import (  # the scripted master and its fixtures
    FRAMEWORK_ID,
    FakeMaster,
    agent,
    command_task,
    kill_task,
    make_config,
    master,
    run_task,
    sandbox_of,
)

from butte.agent.service import Agent
from butte.testing.wait import until
from butte.wire.agent_link import AgentEvent, ExecutorRef, FrameworkMessage
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, DurationInfo, ExecutorInfo, KillPolicy, TaskInfo

__all__ = ["agent", "master"]  # fixtures pytest finds by name


EXECUTOR_SCRIPT = textwrap.dedent(
    """
    import base64, http.client, json, os, sys
    host, port = os.environ["MESOS_AGENT_ENDPOINT"].split(":")
    ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
           "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}
    def post(body):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/api/v1/executor", json.dumps({**ids, **body}),
                     {"Content-Type": "application/json"})
        return conn, conn.getresponse()
    def update(task_id, state):
        status = {"task_id": task_id, "state": state, "source": "SOURCE_EXECUTOR",
                  "uuid": base64.b64encode(os.urandom(16)).decode()}
        _, response = post({"type": "UPDATE", "update": {"status": status}})
        assert response.status == 202, response.status
    conn, stream = post({"type": "SUBSCRIBE", "subscribe": {}})
    assert stream.status == 200
    log = open("events", "a")
    buffer = b""
    while True:
        while b"\\n" not in buffer:
            buffer += stream.read1(65536)
        size, _, buffer = buffer.partition(b"\\n")
        while len(buffer) < int(size):
            buffer += stream.read1(65536)
        event, buffer = json.loads(buffer[:int(size)]), buffer[int(size):]
        log.write(json.dumps(event) + "\\n"); log.flush()
        kind = event["type"]
        if kind == "SUBSCRIBED":
            assert event["subscribed"]["executor_info"]["executor_id"] == ids["executor_id"]
            assert event["subscribed"]["framework_info"]["id"] == ids["framework_id"]
        elif kind == "LAUNCH":
            update(event["launch"]["task"]["task_id"], "TASK_RUNNING")
        elif kind == "KILL":
            update(event["kill"]["task_id"], "TASK_KILLED")
        elif kind == "MESSAGE":
            post({"type": "MESSAGE", "message": {"data": event["message"]["data"]}})
        elif kind == "SHUTDOWN":
            sys.exit(0)
    """
)


def executor_task(task_id: str, executor_id: str, tmp_path: Path, command: str | None = None) -> TaskInfo:
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR_SCRIPT)
    executor = ExecutorInfo(
        executor_id=ID(value=executor_id),
        command=CommandInfo(value=command or f"{sys.executable} {script}"),
        shutdown_grace_period=DurationInfo(nanoseconds=500_000_000),
    )
    return TaskInfo(name=task_id, task_id=ID(value=task_id), agent_id=ID(value="M-S0"), executor=executor)


def executor_events(agent: Agent, executor_id: str) -> list[dict[str, Any]]:
    runs = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/{executor_id}/runs/latest"
    path = runs / "events"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_custom_executor_lifecycle(master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path) -> None:
    fake, _ = master
    fake.send(run_task(executor_task("c1", "exec-1", tmp_path)))
    await until(lambda: fake.states("c1") == ["TASK_RUNNING"], timeout=10)
    running = fake.updates[-1]
    assert running.source == "SOURCE_EXECUTOR" and running.agent_id == ID(value="M-S0")
    assert running.executor_id == ID(value="exec-1")
    # The framework's ack comes back to the executor as ACKNOWLEDGED with the same uuid.
    await until(lambda: [e for e in executor_events(agent, "exec-1") if e["type"] == "ACKNOWLEDGED"])
    acked = next(e for e in executor_events(agent, "exec-1") if e["type"] == "ACKNOWLEDGED")
    assert acked["acknowledged"]["uuid"] == running.uuid
    # A second task for the same executor is launched on the same stream.
    fake.send(run_task(executor_task("c2", "exec-1", tmp_path)))
    await until(lambda: fake.states("c2") == ["TASK_RUNNING"])
    # Framework messages reach the executor, and its messages reach the master.
    message = FrameworkMessage(framework_id=ID(value=FRAMEWORK_ID), executor_id=ID(value="exec-1"), data="aGk=")
    fake.send(AgentEvent(type="FRAMEWORK_MESSAGE", framework_message=message))
    await until(lambda: [c for c in fake.calls if c.type == "MESSAGE"])
    relayed = next(c.message for c in fake.calls if c.type == "MESSAGE")
    assert relayed is not None and relayed.data == "aGk=" and relayed.executor_id == ID(value="exec-1")
    # KILL_TASK becomes a KILL event; the executor answers TASK_KILLED.
    fake.send(kill_task("c1"))
    await until(lambda: fake.states("c1") == ["TASK_RUNNING", "TASK_KILLED"])
    # SHUTDOWN_EXECUTOR: the executor exits; its last task fails and the master hears EXECUTOR_EXITED.
    ref = ExecutorRef(framework_id=ID(value=FRAMEWORK_ID), executor_id=ID(value="exec-1"))
    fake.send(AgentEvent(type="SHUTDOWN_EXECUTOR", shutdown_executor=ref))
    await until(lambda: "TASK_FAILED" in fake.states("c2"))
    assert fake.updates[-1].reason == "REASON_EXECUTOR_TERMINATED"
    await until(lambda: [c for c in fake.calls if c.type == "EXECUTOR_EXITED"])
    exited = next(c.executor_exited for c in fake.calls if c.type == "EXECUTOR_EXITED")
    assert exited is not None and exited.executor_id == ID(value="exec-1") and exited.status == 0
    await until(lambda: agent.state.executor(FRAMEWORK_ID, "exec-1") is None)


async def test_executor_environment(master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path) -> None:
    fake, _ = master
    fake.send(run_task(executor_task("env", "exec-env", tmp_path, command="env > env.txt; exit 0")))
    await until(lambda: "TASK_FAILED" in fake.states("env"))
    runs = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/exec-env/runs/latest"
    env = dict(line.split("=", 1) for line in (runs / "env.txt").read_text().splitlines() if "=" in line)
    port = agent.agent_info.port
    assert env["MESOS_FRAMEWORK_ID"] == FRAMEWORK_ID and env["MESOS_EXECUTOR_ID"] == "exec-env"
    assert env["MESOS_AGENT_ENDPOINT"] == f"127.0.0.1:{port}" and env["MESOS_SLAVE_ID"] == "M-S0"
    assert env["MESOS_SLAVE_PID"] == f"slave(1)@127.0.0.1:{port}"
    assert env["MESOS_DIRECTORY"] == env["MESOS_SANDBOX"] == str(runs.resolve())
    assert env["MESOS_CHECKPOINT"] == "0" and env["MESOS_HTTP_COMMAND_EXECUTOR"] == "0"
    assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "1secs"
    assert env["LIBPROCESS_IP"] == "127.0.0.1"
    assert "MESOS_RECOVERY_TIMEOUT" not in env


async def test_executor_that_never_subscribes_is_killed(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    agent = Agent(make_config(address, tmp_path / "agent", executor_registration_timeout_s=0.3))
    await agent.start()
    try:
        await until(lambda: agent.agent_info.id is not None)
        fake.send(run_task(executor_task("quiet", "exec-quiet", tmp_path, command="sleep 60")))
        await until(lambda: "TASK_FAILED" in fake.states("quiet"))
        assert fake.updates[-1].reason == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
        exited = next(c.executor_exited for c in fake.calls if c.type == "EXECUTOR_EXITED")
        assert exited is not None and exited.status == signal.SIGKILL
    finally:
        await agent.stop()


async def test_executor_that_cannot_start_fails_its_task(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    task = executor_task("nolaunch", "exec-missing", tmp_path)
    assert task.executor is not None
    task.executor.command = CommandInfo(shell=False, value="/no/such/executor")
    fake.send(run_task(task))
    await until(lambda: fake.states("nolaunch") == ["TASK_FAILED"])
    failed = fake.updates[-1]
    assert failed.reason == "REASON_CONTAINER_LAUNCH_FAILED" and failed.source == "SOURCE_AGENT"
    assert "/no/such/executor" in (failed.message or "")
    await until(lambda: [c for c in fake.calls if c.type == "EXECUTOR_EXITED"])


async def test_kill_of_a_task_the_executor_has_not_got(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    fake.send(run_task(executor_task("queued", "exec-silent", tmp_path, command="sleep 60")))
    await until(lambda: agent.snapshot().live_tasks == 1)
    fake.send(kill_task("queued"))
    await until(lambda: fake.states("queued") == ["TASK_KILLED"])
    assert fake.updates[-1].reason == "REASON_TASK_KILLED_DURING_LAUNCH"


async def test_executor_api_on_the_agent_knows_its_executors(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    fake.send(run_task(executor_task("api", "exec-api", tmp_path, command="sleep 60")))
    await until(lambda: agent.snapshot().executors == 1)
    url = f"http://127.0.0.1:{agent.agent_info.port}/api/v1/executor"
    headers = {"Content-Type": "application/json"}

    def body(framework_id: str, executor_id: str) -> str:
        ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": executor_id}}
        return json.dumps({**ids, "type": "HEARTBEAT"})

    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body("other", "exec-api"), headers=headers) as response:
            assert (response.status, await response.text()) == (400, "Framework cannot be found")
        async with session.post(url, data=body(FRAMEWORK_ID, "other"), headers=headers) as response:
            assert (response.status, await response.text()) == (400, "Executor cannot be found")
        async with session.post(url, data=body(FRAMEWORK_ID, "exec-api"), headers=headers) as response:
            assert (response.status, await response.text()) == (403, "Executor is not subscribed")


async def test_stop_kills_every_task_and_executor(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    agent = Agent(make_config(address, tmp_path / "agent", executor_shutdown_grace_period_s=0.2))
    await agent.start()
    await until(lambda: agent.agent_info.id is not None)
    grace = KillPolicy(grace_period=DurationInfo(nanoseconds=200_000_000))
    fake.send(run_task(command_task("stubborn", "trap '' TERM; sleep 60 & echo $! > child; wait", kill_policy=grace)))
    fake.send(run_task(executor_task("ex", "exec-stop", tmp_path, command="trap '' TERM; sleep 60")))
    await until(lambda: "TASK_RUNNING" in fake.states("stubborn"))
    child_file = sandbox_of(agent, "stubborn") / "child"
    await until(lambda: child_file.exists() and child_file.read_text().strip())
    child = int(child_file.read_text())
    await asyncio.wait_for(agent.stop(), timeout=10)
    assert not agent.builtin._runners
    await until(lambda: not Path(f"/proc/{child}").exists() or ") Z" in Path(f"/proc/{child}/stat").read_text())


async def test_stop_right_after_a_launch_leaves_nothing_running(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    agent = Agent(make_config(address, tmp_path / "agent"))
    await agent.start()
    await until(lambda: agent.agent_info.id is not None)
    fake.send(run_task(command_task("early-cmd", "echo $$ > pid; exec sleep 60")))
    fake.send(run_task(executor_task("early-ex", "exec-early", tmp_path, command="echo $$ > pid; exec sleep 60")))
    await until(lambda: agent.snapshot().live_tasks == 2)
    await asyncio.wait_for(agent.stop(), timeout=10)
    runs = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors"
    pids = [int(p.read_text()) for p in runs.glob("*/runs/latest/pid") if p.read_text().strip()]
    for pid in pids:
        await until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or ") Z" in Path(f"/proc/{pid}/stat").read_text())
