"""Health checks, checks and max_completion_time of command tasks under a real agent, with real processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
from test_agent_service import (
    FRAMEWORK_ID,
    FakeMaster,
    agent,
    command_task,
    framework_info,
    kill_task,
    master,
    run_task,
    sandbox_of,
)

from butte.agent.service import Agent
from butte.testing.ports import free_port
from butte.testing.wait import until
from butte.wire.agent_link import AgentEvent, RunTaskGroup
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, CommandURI, DurationInfo, ExecutorInfo, TaskGroupInfo, TaskStatus

__all__ = ["agent", "master"]  # fixtures pytest finds by name

FAST = {"delay_seconds": 0, "interval_seconds": 0.2, "timeout_seconds": 2}


def raw(document: dict[str, Any]) -> msgspec.Raw:
    return msgspec.Raw(json.dumps(document).encode())


def statuses(fake: FakeMaster, task_id: str) -> list[TaskStatus]:
    return [status for status in fake.updates if status.task_id.value == task_id]


def health_updates(fake: FakeMaster, task_id: str) -> list[bool | None]:
    return [s.healthy for s in statuses(fake, task_id) if s.reason == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"]


def check_results(fake: FakeMaster, task_id: str) -> list[dict[str, Any]]:
    found = [s for s in statuses(fake, task_id) if s.reason == "REASON_TASK_CHECK_STATUS_UPDATED"]
    return [msgspec.json.decode(bytes(s.check_status)) for s in found]


def http_server(port: int) -> str:
    return f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1"


async def test_command_health_check_healthy_then_unhealthy_then_killed(
    master: tuple[FakeMaster, str], agent: Agent
) -> None:
    fake, _ = master
    check = {"type": "COMMAND", "command": {"value": 'test -f marker && test "$MESOS_TASK_ID" = h1'}, **FAST}
    # Failures before the marker exists fall in the grace period; after the first success, they count.
    check |= {"consecutive_failures": 3, "grace_period_seconds": 0.8}
    script = "touch marker; sleep 1; rm marker; sleep 30"
    fake.send(run_task(command_task("h1", script, health_check=raw(check))))
    await until(lambda: health_updates(fake, "h1") == [True], timeout=10)
    await until(lambda: fake.states("h1")[-1:] == ["TASK_KILLED"], timeout=10)
    assert health_updates(fake, "h1") == [True, False]  # only changes are reported
    final = statuses(fake, "h1")[-1]
    assert final.healthy is False and final.message is not None
    assert "health check failed 3 times in a row" in final.message
    first_running = next(s for s in statuses(fake, "h1") if s.state == "TASK_RUNNING")
    assert first_running.healthy is None  # not known yet when the task starts
    assert [s.state for s in statuses(fake, "h1")].count("TASK_RUNNING") == 3


async def test_failures_in_the_grace_period_do_not_count(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    check = {"type": "COMMAND", "command": {"value": "false"}, **FAST}
    check |= {"consecutive_failures": 2, "grace_period_seconds": 1.0}
    fake.send(run_task(command_task("g1", "sleep 30", health_check=raw(check))))
    await until(lambda: fake.states("g1")[-1:] == ["TASK_KILLED"], timeout=10)
    started = next(s for s in statuses(fake, "g1") if s.state == "TASK_RUNNING")
    unhealthy = next(s for s in statuses(fake, "g1") if s.healthy is False)
    assert started.timestamp is not None and unhealthy.timestamp is not None
    assert unhealthy.timestamp - started.timestamp >= 1.0
    assert health_updates(fake, "g1") == [False]


async def test_http_health_check_and_tcp_health_check(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    port = free_port()
    http_check = {"type": "HTTP", "http": {"port": port, "path": "/"}, **FAST, "grace_period_seconds": 10}
    fake.send(run_task(command_task("web", http_server(port), health_check=raw(http_check))))
    await until(lambda: health_updates(fake, "web") == [True], timeout=10)
    # TCP to a port nobody listens on: unhealthy at once (no grace period), killed after 2 failures.
    closed = free_port()
    tcp_check = {"type": "TCP", "tcp": {"port": closed}, **FAST, "grace_period_seconds": 0, "consecutive_failures": 2}
    fake.send(run_task(command_task("tcp", "sleep 30", health_check=raw(tcp_check))))
    await until(lambda: fake.states("tcp")[-1:] == ["TASK_KILLED"], timeout=10)
    assert health_updates(fake, "tcp") == [False]
    # An HTTP path answering 404 counts as a failure.
    missing = {"type": "HTTP", "http": {"port": port, "path": "/no/such/page"}, **FAST}
    missing |= {"grace_period_seconds": 0, "consecutive_failures": 1}
    fake.send(run_task(command_task("web404", "sleep 30", health_check=raw(missing))))
    await until(lambda: fake.states("web404")[-1:] == ["TASK_KILLED"], timeout=10)
    assert "status 404" in (statuses(fake, "web404")[-1].message or "")
    fake.send(kill_task("web", grace_s=1.0))
    await until(lambda: fake.states("web")[-1:] == ["TASK_KILLED"], timeout=10)
    assert statuses(fake, "web")[-1].healthy is True  # killed by request while healthy


async def test_command_check_reports_each_change_and_never_kills(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    check = {"type": "COMMAND", "command": {"command": {"value": "exit $(cat code 2>/dev/null || echo 0)"}}, **FAST}
    script = "echo 0 > code; sleep 0.6; echo 3 > code; sleep 30"
    fake.send(run_task(command_task("c1", script, check=raw(check))))
    await until(lambda: len(check_results(fake, "c1")) >= 2, timeout=10)
    results = check_results(fake, "c1")
    assert results[:2] == [
        {"type": "COMMAND", "command": {"exit_code": 0}},
        {"type": "COMMAND", "command": {"exit_code": 3}},
    ]
    first_running = next(s for s in statuses(fake, "c1") if s.state == "TASK_RUNNING")
    assert msgspec.json.decode(bytes(first_running.check_status)) == {"type": "COMMAND", "command": {}}
    assert fake.states("c1")[-1] == "TASK_RUNNING"
    fake.send(kill_task("c1", grace_s=1.0))
    await until(lambda: fake.states("c1")[-1:] == ["TASK_KILLED"], timeout=10)
    final = msgspec.json.decode(bytes(statuses(fake, "c1")[-1].check_status))
    assert final == {"type": "COMMAND", "command": {"exit_code": 3}}


async def test_http_and_tcp_checks_report_status_and_success(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    port = free_port()
    http_check = {"type": "HTTP", "http": {"port": port, "path": "/"}, **FAST}
    fake.send(run_task(command_task("hc", http_server(port), check=raw(http_check))))
    await until(lambda: {"type": "HTTP", "http": {"status_code": 200}} in check_results(fake, "hc"), timeout=10)
    tcp_check = {"type": "TCP", "tcp": {"port": port}, **FAST}
    fake.send(run_task(command_task("tc", "sleep 30", check=raw(tcp_check))))
    await until(lambda: {"type": "TCP", "tcp": {"succeeded": True}} in check_results(fake, "tc"), timeout=10)
    for task_id in ("hc", "tc"):
        fake.send(kill_task(task_id, grace_s=1.0))
    await until(lambda: fake.states("hc")[-1:] == fake.states("tc")[-1:] == ["TASK_KILLED"], timeout=10)


async def test_max_completion_time_fails_a_task_still_running(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    deadline = DurationInfo(nanoseconds=500_000_000)
    fake.send(run_task(command_task("slow", "sleep 30", max_completion_time=deadline)))
    fake.send(run_task(command_task("quick", "true", max_completion_time=deadline)))
    await until(lambda: fake.states("slow")[-1:] == ["TASK_FAILED"], timeout=10)
    final = statuses(fake, "slow")[-1]
    assert final.reason == "REASON_MAX_COMPLETION_TIME_REACHED"
    assert final.message == "Task exceeded its max completion time of 0.5 seconds"
    running = next(s for s in statuses(fake, "slow") if s.state == "TASK_RUNNING")
    assert final.timestamp is not None and running.timestamp is not None
    assert final.timestamp - running.timestamp >= 0.5
    assert fake.states("quick") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]


async def test_a_probe_past_its_timeout_fails_and_is_killed(master: tuple[FakeMaster, str], agent: Agent) -> None:
    fake, _ = master
    check = {"type": "COMMAND", "command": {"value": "echo $$ >> probes; exec sleep 30"}, "delay_seconds": 0}
    check |= {"interval_seconds": 0.1, "timeout_seconds": 0.3, "grace_period_seconds": 0, "consecutive_failures": 2}
    fake.send(run_task(command_task("t1", "sleep 30", health_check=raw(check))))
    await until(lambda: fake.states("t1")[-1:] == ["TASK_KILLED"], timeout=10)
    assert "COMMAND health check got no result within 0.3 seconds" in (statuses(fake, "t1")[-1].message or "")
    probe_pids = [int(line) for line in (sandbox_of(agent, "t1") / "probes").read_text().split()]
    assert len(probe_pids) == 2

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    await until(lambda: all(gone(pid) for pid in probe_pids), timeout=5)


async def test_group_task_checks_run_in_its_own_directory(
    master: tuple[FakeMaster, str], agent: Agent, tmp_path: Path
) -> None:
    fake, _ = master
    (tmp_path / "flag").write_text("up\n")
    fetched = CommandInfo(value="sleep 30", uris=[CommandURI(value=str(tmp_path / "flag"))])
    check = {"type": "COMMAND", "command": {"value": "test -f flag && ! test -f stop"}, **FAST}
    check |= {"grace_period_seconds": 0, "consecutive_failures": 1}
    watched = command_task("gw", "sleep 30", health_check=raw(check))
    watched.command = fetched
    group = TaskGroupInfo(tasks=[watched, command_task("gs", "sleep 30")])
    executor = ExecutorInfo(executor_id=ID(value="hc-group"), type="DEFAULT")
    event = RunTaskGroup(framework_info=framework_info(), executor=executor, task_group=group)
    fake.send(AgentEvent(type="RUN_TASK_GROUP", run_task_group=event))
    await until(lambda: health_updates(fake, "gw") == [True], timeout=10)
    runs = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/hc-group/runs/latest"
    assert (runs / "tasks/gw/flag").read_text() == "up\n"
    (runs / "tasks/gw/stop").touch()
    # The unhealthy task is killed, and the default executor's rule takes its group with it.
    await until(lambda: fake.states("gw")[-1:] == fake.states("gs")[-1:] == ["TASK_KILLED"], timeout=10)
    assert health_updates(fake, "gw") == [True, False]
