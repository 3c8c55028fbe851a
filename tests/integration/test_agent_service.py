"""A real agent (in this process) against a scripted master on loopback, running real task processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from butte.agent.config import AgentConfig
from butte.agent.service import Agent
from butte.core.resources import Attributes, Resources
from butte.testing.wait import until
from butte.wire.agent_link import (
    AcknowledgeUpdate,
    AgentCall,
    AgentEvent,
    FrameworkRef,
    KillTask,
    ReconcileTasks,
    Registered,
    RunTask,
    RunTaskGroup,
    ShutdownAgent,
    UpdateFrameworkInfo,
)
from butte.wire.base import ID, decode, encode
from butte.wire.mesos import (
    CommandInfo,
    DurationInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)
from butte.wire.recordio import frame

FRAMEWORK_ID = "M-0000"


class FakeMaster:
    """Speaks the master side of /api/v1/agent: records calls, sends scripted events, acks updates."""

    def __init__(self) -> None:
        self.registrations: list[AgentCall] = []
        self.calls: list[AgentCall] = []
        self.auto_ack = True
        self.ping_interval_s = 15.0
        self.refuse_registrations = 0
        self.raw_records: list[bytes] = []  # written on the next stream before REGISTERED
        self._outbox: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self.stream_id = ""
        self.app = web.Application()
        self.app.router.add_post("/api/v1/agent", self.handle)

    @property
    def updates(self) -> list[TaskStatus]:
        return [u.status for c in self.calls if c.type == "UPDATE" for u in c.updates]

    def states(self, task_id: str) -> list[str]:
        return [s.state for s in self.updates if s.task_id.value == task_id]

    def send(self, event: AgentEvent) -> None:
        self._outbox.put_nowait(event)

    def drop_connection(self) -> None:
        self._outbox.put_nowait(None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = decode(await request.read(), AgentCall)
        if call.type in ("REGISTER", "REREGISTER"):
            return await self._stream(request, call)
        assert request.headers["Mesos-Stream-Id"] == self.stream_id
        self.calls.append(call)
        for update in call.updates if call.type == "UPDATE" and self.auto_ack else []:
            status = update.status
            if status.uuid is not None:
                ack = AcknowledgeUpdate(framework_id=update.framework_id, task_id=status.task_id, uuid=status.uuid)
                self.send(AgentEvent(type="ACKNOWLEDGE_UPDATE", acknowledge_update=ack))
        return web.Response(status=202)

    async def _stream(self, request: web.Request, call: AgentCall) -> web.StreamResponse:
        self.registrations.append(call)
        if self.refuse_registrations > 0:
            self.refuse_registrations -= 1
            return web.Response(status=503, text="no leading master")
        self.stream_id = f"stream-{len(self.registrations)}"
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for record in self.raw_records:
            await response.write(frame(record))
        registered = Registered(
            agent_id=ID(value="M-S0"),
            master_info=MasterInfo(id="M", ip=16777343, port=5050),
            ping_interval_seconds=self.ping_interval_s,
        )
        await response.write(frame(encode(AgentEvent(type="REGISTERED", registered=registered))))
        while (event := await self._outbox.get()) is not None:
            await response.write(frame(encode(event)))
        return response


@pytest.fixture
async def master() -> AsyncIterator[tuple[FakeMaster, str]]:
    fake = FakeMaster()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, f"127.0.0.1:{server.port}"
    fake.drop_connection()
    await server.close()


def make_config(master: str, work_dir: Path, **overrides: Any) -> AgentConfig:
    settings: dict[str, Any] = {
        "master": master,
        "work_dir": str(work_dir),
        "resources": Resources.parse("cpus:2;mem:1024;disk:1000;ports:[31000-32000]"),
        "attributes": Attributes.parse("rack:a"),
        "port": 0,
        "hostname": "localhost",
        "registration_backoff_factor_s": 0.05,
        "executor_shutdown_grace_period_s": 1.0,
        **overrides,
    }
    return AgentConfig(**settings)


@pytest.fixture
async def agent(master: tuple[FakeMaster, str], tmp_path: Path) -> AsyncIterator[Agent]:
    _, address = master
    running = Agent(make_config(address, tmp_path))
    await running.start()
    await until(lambda: running.agent_info.id is not None, timeout=5)
    yield running
    await running.stop()


def framework_info(*capabilities: str) -> FrameworkInfo:
    caps = [{"type": c} for c in capabilities]
    return decode(
        json.dumps({"user": "root", "name": "test", "id": {"value": FRAMEWORK_ID}, "capabilities": caps}), FrameworkInfo
    )


def command_task(task_id: str, command: str, **extra: Any) -> TaskInfo:
    return TaskInfo(
        name=task_id,
        task_id=ID(value=task_id),
        agent_id=ID(value="M-S0"),
        command=CommandInfo(value=command),
        **extra,
    )


def run_task(task: TaskInfo, framework: FrameworkInfo | None = None) -> AgentEvent:
    return AgentEvent(type="RUN_TASK", run_task=RunTask(framework_info=framework or framework_info(), task=task))


def kill_task(task_id: str, grace_s: float | None = None) -> AgentEvent:
    policy = KillPolicy(grace_period=DurationInfo(nanoseconds=int(grace_s * 1e9))) if grace_s is not None else None
    kill = KillTask(framework_id=ID(value=FRAMEWORK_ID), task_id=ID(value=task_id), kill_policy=policy)
    return AgentEvent(type="KILL_TASK", kill_task=kill)


def sandbox_of(agent: Agent, task_id: str) -> Path:
    return Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/{task_id}/runs/latest"


async def test_registers_with_its_resources_and_attributes(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    [registration] = fake.registrations
    assert registration.type == "REGISTER" and registration.register is not None
    info = registration.register.agent_info
    assert info.hostname == "localhost" and info.port == agent.agent_info.port and info.id is None
    assert {r.name for r in info.resources} == {"cpus", "mem", "disk", "ports"}
    assert [a.name for a in info.attributes] == ["rack"]
    assert agent.agent_info.id == ID(value="M-S0")


async def test_answers_ping_with_pong(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(AgentEvent(type="PING"))
    await until(lambda: any(c.type == "PONG" for c in fake.calls))
    assert fake.calls[-1].agent_id == ID(value="M-S0")


async def test_command_task_runs_and_reports_in_order(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    script = 'echo "$MESOS_TASK_ID $MESOS_FRAMEWORK_ID $MESOS_EXECUTOR_ID $MESOS_SLAVE_ID $GREETING"; pwd'
    environment = {"variables": [{"name": "GREETING", "value": "hello"}]}
    task = command_task("t1", script)
    task.command = decode(json.dumps({"value": script, "environment": environment}), CommandInfo)
    fake.send(run_task(task))
    await until(lambda: fake.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"])
    sandbox = sandbox_of(agent, "t1").resolve()
    assert (sandbox / "stdout").read_text() == f"t1 {FRAMEWORK_ID} t1 M-S0 hello\n{sandbox}\n"
    finished = fake.updates[-1]
    assert finished.message == "Command exited with status 0"
    assert finished.source == "SOURCE_EXECUTOR"
    assert finished.agent_id == ID(value="M-S0") and finished.executor_id == ID(value="t1")
    assert finished.container_status is not None and finished.container_status.container_id is not None
    assert finished.container_status.container_id.value == sandbox.name
    assert len({s.uuid for s in fake.updates}) == 3
    assert all(len(base64.b64decode(s.uuid or "")) == 16 for s in fake.updates)
    await until(lambda: agent.state.task(FRAMEWORK_ID, "t1") is None)  # acked: moved to completed


async def test_argv_task_failure_and_signal_messages(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    argv_task = command_task("argv", "")
    argv_task.command = CommandInfo(shell=False, value="/bin/sh", arguments=["sh", "-c", "exit 3"])
    fake.send(run_task(argv_task))
    fake.send(run_task(command_task("sig", "kill -KILL $$")))
    await until(lambda: "TASK_FAILED" in fake.states("argv") and "TASK_FAILED" in fake.states("sig"))
    messages = {s.task_id.value: s.message for s in fake.updates if s.state == "TASK_FAILED"}
    assert messages == {"argv": "Command exited with status 3", "sig": "Command terminated with signal Killed"}


async def test_kill_task_with_grace_period(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("k", "trap '' TERM; sleep 60"), framework_info("TASK_KILLING_STATE")))
    await until(lambda: "TASK_RUNNING" in fake.states("k"))
    fake.send(kill_task("k", grace_s=0.2))
    await until(lambda: "TASK_KILLED" in fake.states("k"))
    assert fake.states("k") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
    assert fake.updates[-1].message == "Command terminated with signal Killed"


async def test_kill_of_an_unknown_task_is_dropped(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(kill_task("nope"))
    await until(lambda: fake.states("nope") == ["TASK_DROPPED"])
    dropped = fake.updates[-1]
    assert dropped.source == "SOURCE_AGENT" and dropped.message == "Attempted to kill an unknown task"


async def test_duplicate_task_id_gets_task_error(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("dup", "sleep 60")))
    await until(lambda: "TASK_RUNNING" in fake.states("dup"))
    fake.send(run_task(command_task("dup", "true")))
    await until(lambda: "TASK_ERROR" in fake.states("dup"))
    error = fake.updates[-1]
    assert error.uuid is None and error.reason == "REASON_TASK_INVALID"  # sent once, outside the task's stream
    task = agent.state.task(FRAMEWORK_ID, "dup")
    assert task is not None and task.state == "TASK_RUNNING"  # the running task is untouched
    fake.send(kill_task("dup", grace_s=0.1))
    await until(lambda: "TASK_KILLED" in fake.states("dup"))  # and its stream still delivers


async def test_missing_user_fails_the_task(master: tuple[FakeMaster, str], agent: Agent) -> None:
    if os.geteuid() != 0:
        pytest.skip("users are only switched when root")
    fake, _ = master
    task = command_task("u", "true")
    assert task.command is not None
    task.command.user = "no-such-user-xyz"
    fake.send(run_task(task))
    await until(lambda: fake.states("u") == ["TASK_FAILED"])
    failed = fake.updates[-1]
    assert failed.source == "SOURCE_AGENT" and "no-such-user-xyz" in (failed.message or "")
    assert failed.reason == "REASON_CONTAINER_LAUNCH_FAILED"


async def test_unacknowledged_updates_wait_and_follow_acks_in_order(
    master: tuple[FakeMaster, str], agent: Agent
) -> None:
    fake, _ = master
    fake.auto_ack = False
    fake.send(run_task(command_task("slow", "true")))
    await until(lambda: fake.states("slow") == ["TASK_STARTING"])
    for expected in (["TASK_STARTING", "TASK_RUNNING"], ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]):
        head = fake.updates[-1]
        assert head.uuid is not None
        ack = AcknowledgeUpdate(framework_id=ID(value=FRAMEWORK_ID), task_id=head.task_id, uuid=head.uuid)
        fake.send(AgentEvent(type="ACKNOWLEDGE_UPDATE", acknowledge_update=ack))
        await until(lambda expected=expected: fake.states("slow") == expected)  # type: ignore[misc]


async def test_reconnect_reregisters_and_replays_the_head(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.auto_ack = False
    fake.send(run_task(command_task("r", "sleep 60")))
    await until(lambda: fake.states("r") == ["TASK_STARTING"])
    fake.drop_connection()
    await until(lambda: len(fake.registrations) == 2)
    again = fake.registrations[1]
    assert again.type == "REREGISTER" and again.reregister is not None and again.agent_id == ID(value="M-S0")
    assert again.reregister.agent_info.id == ID(value="M-S0")
    [task] = again.reregister.tasks
    assert task.task_id.value == "r" and task.state == "TASK_RUNNING"
    assert task.status_update_state == "TASK_RUNNING"
    assert [f.id for f in again.reregister.frameworks] == [ID(value=FRAMEWORK_ID)]
    await until(lambda: fake.states("r") == ["TASK_STARTING", "TASK_STARTING"])  # the head, replayed


async def test_reconcile_resends_the_latest_state(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("rc", "sleep 60")))
    await until(lambda: fake.states("rc") == ["TASK_STARTING", "TASK_RUNNING"])
    await until(lambda: not agent.channel.manager.pending(FRAMEWORK_ID, "rc"))
    reconcile = ReconcileTasks(framework_id=ID(value=FRAMEWORK_ID))
    fake.send(AgentEvent(type="RECONCILE", reconcile=reconcile))
    await until(lambda: fake.states("rc") == ["TASK_STARTING", "TASK_RUNNING", "TASK_RUNNING"])
    assert fake.updates[-1].uuid != fake.updates[-2].uuid


async def test_task_group_failure_kills_the_rest(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    group = TaskGroupInfo(tasks=[command_task("g1", "sleep 60"), command_task("g2", "exit 1")])
    executor = ExecutorInfo(executor_id=ID(value="group-e"), type="DEFAULT")
    event = RunTaskGroup(framework_info=framework_info(), executor=executor, task_group=group)
    fake.send(AgentEvent(type="RUN_TASK_GROUP", run_task_group=event))
    await until(lambda: "TASK_FAILED" in fake.states("g2") and "TASK_KILLED" in fake.states("g1"))
    runs = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/group-e/runs/latest"
    assert (runs / "tasks/g1/stdout").exists()
    assert {s.executor_id.value for s in fake.updates if s.executor_id} == {"group-e"}


async def test_state_endpoint_lists_frameworks_executors_and_tasks(
    master: tuple[FakeMaster, str], agent: Agent
) -> None:
    fake, _ = master
    fake.send(run_task(command_task("st", "sleep 60")))
    await until(lambda: "TASK_RUNNING" in fake.states("st"))
    async with aiohttp.ClientSession() as session:
        for path in ("/state", "/slave(1)/state"):
            async with session.get(f"http://127.0.0.1:{agent.agent_info.port}{path}") as response:
                state = await response.json()
            assert state["id"] == "M-S0"
            assert state["pid"] == f"slave(1)@127.0.0.1:{agent.agent_info.port}"
            assert state["resources"]["cpus"] == 2.0 and state["resources"]["ports"] == "[31000-32000]"
            assert state["attributes"] == {"rack": "a"}
            [framework] = state["frameworks"]
            [executor] = framework["executors"]
            assert executor["id"] == "st" and executor["directory"].endswith(executor["container"])
            [task] = executor["tasks"]
            assert task["state"] == "TASK_RUNNING" and task["slave_id"] == "M-S0"
            assert [s["state"] for s in task["statuses"]] == ["TASK_STARTING", "TASK_RUNNING"]
        async with session.get(f"http://127.0.0.1:{agent.agent_info.port}/version") as response:
            assert (await response.json())["version"] == "1.11.0"
        async with session.get(f"http://127.0.0.1:{agent.agent_info.port}/health") as response:
            assert response.status == 200


async def test_shutdown_framework_kills_its_tasks(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("sf", "echo $$ > pid; sleep 60")))
    await until(lambda: "TASK_RUNNING" in fake.states("sf"))
    pid_file = sandbox_of(agent, "sf") / "pid"
    await until(lambda: pid_file.exists() and pid_file.read_text().strip())
    pid = int(pid_file.read_text())
    fake.send(
        AgentEvent(type="SHUTDOWN_FRAMEWORK", shutdown_framework=FrameworkRef(framework_id=ID(value=FRAMEWORK_ID)))
    )
    await until(lambda: FRAMEWORK_ID not in agent.state.frameworks)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    assert "TASK_KILLED" not in fake.states("sf")  # a shut-down framework hears nothing more


async def test_shutdown_event_stops_the_agent_with_an_error(master: tuple[FakeMaster, str], tmp_path: Path) -> None:
    fake, address = master
    agent = Agent(make_config(address, tmp_path))
    running = asyncio.create_task(agent.run())
    await until(lambda: agent.agent_info.id is not None)
    fake.send(run_task(command_task("bye", "sleep 60")))
    await until(lambda: "TASK_RUNNING" in fake.states("bye"))
    fake.send(AgentEvent(type="SHUTDOWN", shutdown=ShutdownAgent(message="Agent has been marked gone")))
    assert await asyncio.wait_for(running, timeout=10) == 1
    assert not agent.builtin._runners


async def test_files_endpoints_serve_sandboxes(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("files", "printf 'line one\\nline two\\n'")))
    await until(lambda: "TASK_FINISHED" in fake.states("files"))
    base = f"http://127.0.0.1:{agent.agent_info.port}/files"
    virtual = f"/frameworks/{FRAMEWORK_ID}/executors/files/runs/latest"
    real = str(sandbox_of(agent, "files").resolve())
    async with aiohttp.ClientSession() as session:
        for path in (virtual, real):
            async with session.get(f"{base}/browse", params={"path": path}) as response:
                listing = await response.json()
            assert sorted(Path(entry["path"]).name for entry in listing) == ["stderr", "stdout"]
            assert all(entry["mode"].startswith("-rw") for entry in listing)
        async with session.get(f"{base}/read", params={"path": f"{virtual}/stdout", "offset": "5"}) as response:
            assert await response.json() == {"data": "one\nline two\n", "offset": 5}
        async with session.get(f"{base}/read", params={"path": f"{virtual}/stdout"}) as response:
            assert await response.json() == {"data": "", "offset": 18}
        async with session.get(f"{base}/download", params={"path": f"{virtual}/stdout"}) as response:
            assert await response.read() == b"line one\nline two\n"
            assert response.headers["Content-Disposition"] == "attachment; filename=stdout"
        for params, status in (
            ({}, 400),
            ({"path": "/etc/passwd"}, 404),
            ({"path": f"{virtual}/../../../../../../../../etc"}, 404),
            ({"path": f"{virtual}/stdout", "offset": "-5"}, 400),
        ):
            async with session.get(f"{base}/read", params=params) as response:
                assert response.status == status, params


async def test_update_framework_refreshes_known_frameworks_only(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    fake.send(run_task(command_task("uf", "sleep 60")))
    await until(lambda: FRAMEWORK_ID in agent.state.frameworks)
    renamed = framework_info()
    renamed.name = "renamed"
    stranger = FrameworkInfo(user="root", name="other", id=ID(value="M-0001"))
    for info in (renamed, stranger):
        fake.send(AgentEvent(type="UPDATE_FRAMEWORK", update_framework=UpdateFrameworkInfo(framework_info=info)))
    fake.send(AgentEvent(type="PING"))  # events are handled in order: once PONG is back, both were seen
    await until(lambda: any(c.type == "PONG" for c in fake.calls))
    assert agent.state.frameworks[FRAMEWORK_ID].info.name == "renamed"
    assert "M-0001" not in agent.state.frameworks
