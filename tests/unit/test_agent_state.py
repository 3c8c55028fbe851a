"""The agent's records, its executor environment, command helpers, /state rendering and flags."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

import pytest

from butte.agent.api.state_view import render_state
from butte.agent.config import AgentConfig
from butte.agent.state import AgentState, ExecutorKind, ExecutorState, TaskRecord
from butte.cli.agent_cmd import agent_resources, build_config, configure
from butte.containerizer.environment import ExecutorContext, executor_environment
from butte.core.errors import ValidationError
from butte.core.resources import Attributes, Resources
from butte.executor.command import command_argv, describe_exit, grace_period_s
from butte.wire.base import ID, decode
from butte.wire.mesos import (
    AgentInfo,
    CommandInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskInfo,
    TaskStatus,
)


def framework(framework_id: str = "F") -> FrameworkInfo:
    return FrameworkInfo(user="root", name="fw", id=ID(value=framework_id))


def task(task_id: str) -> TaskInfo:
    resources = json.dumps([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}])
    body = {"name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": "A"}, "command": {"value": "true"}}
    return decode(json.dumps({**body, "resources": json.loads(resources)}), TaskInfo)


def populated() -> tuple[AgentState, ExecutorState, TaskRecord]:
    state = AgentState()
    state.upsert_framework(framework())
    executor = ExecutorState(ExecutorInfo(executor_id=ID(value="t1")), "F", ExecutorKind.COMMAND, "c1", "/sb/c1")
    state.add_executor(executor)
    record = TaskRecord(task("t1"), "F", "t1", "root")
    state.add_task(executor, record)
    return state, executor, record


def test_tasks_move_to_completed_with_their_executor() -> None:
    state, executor, record = populated()
    assert state.task("F", "t1") is record
    record.record(TaskStatus(task_id=ID(value="t1"), state="TASK_FINISHED", uuid="u"))
    assert record.terminal
    assert state.complete_task("F", "t1") is record
    assert state.task("F", "t1") is None
    assert list(executor.completed_tasks) == [record]
    state.complete_executor("F", "t1")
    assert state.executor("F", "t1") is None
    assert list(state.frameworks["F"].completed_executors) == [executor]


def test_remove_framework_retires_everything_it_had() -> None:
    state, _, _ = populated()
    state.remove_framework("F")
    assert state.frameworks == {} and state.task("F", "t1") is None
    assert [f.framework_id for f in state.completed_frameworks] == ["F"]


def test_a_new_executor_run_retires_the_old_one() -> None:
    state, old, _ = populated()
    fresh = ExecutorState(ExecutorInfo(executor_id=ID(value="t1")), "F", ExecutorKind.COMMAND, "c2", "/sb/c2")
    state.add_executor(fresh)
    assert state.executor("F", "t1") is fresh
    assert list(state.frameworks["F"].completed_executors) == [old]


def test_reregistration_reports_live_tasks_with_their_latest_update() -> None:
    state, _, record = populated()
    record.record(TaskStatus(task_id=ID(value="t1"), state="TASK_RUNNING", uuid="u1"))
    tasks, executors, frameworks = state.reregistration_records("A")
    [wire] = tasks
    assert (wire.state, wire.status_update_state, wire.status_update_uuid) == ("TASK_RUNNING", "TASK_RUNNING", "u1")
    assert wire.agent_id == ID(value="A") and wire.executor_id == ID(value="t1")
    assert executors == []  # command executors live inside the agent
    assert [f.id for f in frameworks] == [ID(value="F")]


def test_executor_environment_has_the_mesos_variables() -> None:
    context = ExecutorContext("F", "E", "A", "10.0.0.5", 5051, "/sb", checkpoint=True, shutdown_grace_s=5.0)
    variables = [
        EnvironmentVariable(name="MINE", value="1"),
        EnvironmentVariable(name="HIDDEN", type="SECRET"),
        EnvironmentVariable(name="MESOS_SANDBOX", value="/override"),
    ]
    env = executor_environment({"PATH": "/bin"}, context, Environment(variables=variables))
    assert env["PATH"] == "/bin" and env["MINE"] == "1" and "HIDDEN" not in env
    assert env["MESOS_AGENT_ENDPOINT"] == "10.0.0.5:5051"
    assert env["MESOS_SLAVE_PID"] == "slave(1)@10.0.0.5:5051"
    assert env["MESOS_CHECKPOINT"] == "1" and env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "5secs"
    assert env["MESOS_RECOVERY_TIMEOUT"] == "15mins" and env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] == "2secs"
    assert env["MESOS_SANDBOX"] == "/override"  # the command's own variables come last


def test_command_argv_follows_mesos_shell_rules() -> None:
    assert command_argv(CommandInfo(value="echo hi")) == (("/bin/sh", "-c", "echo hi"), None)
    argv_form = CommandInfo(shell=False, value="/bin/echo", arguments=["echo", "a b"])
    assert command_argv(argv_form) == (("echo", "a b"), "/bin/echo")
    assert command_argv(CommandInfo(shell=False, value="/bin/true")) == (("/bin/true",), "/bin/true")


def test_exit_descriptions_and_grace_periods() -> None:
    assert describe_exit(0) == "Command exited with status 0"
    assert describe_exit(3) == "Command exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "Command terminated with signal Killed"
    two_s = KillPolicy(grace_period=DurationInfo(nanoseconds=2_000_000_000))
    assert grace_period_s(None, two_s) == 2.0
    assert grace_period_s(KillPolicy(grace_period=DurationInfo(nanoseconds=0)), two_s) == 0.0
    assert grace_period_s(None, None) == 3.0


def test_state_document_shape() -> None:
    state, _, record = populated()
    record.record(TaskStatus(task_id=ID(value="t1"), state="TASK_RUNNING", uuid="u", timestamp=5.0))
    config = AgentConfig(
        master="127.0.0.1:5050",
        work_dir="/w",
        resources=Resources.parse("cpus:2;mem:100;ports:[1-2]"),
        attributes=Attributes.parse("rack:a;zone:1"),
        flags={"port": "5051"},
    )
    info = AgentInfo(hostname="h", port=5051, id=ID(value="A"))
    document = render_state(config, state, info, start_time=1.0, master=config.master)
    assert document["id"] == "A" and document["pid"] == "slave(1)@127.0.0.1:5051"
    assert document["resources"] == {"cpus": 2.0, "gpus": 0.0, "mem": 100.0, "disk": 0.0, "ports": "[1-2]"}
    assert document["attributes"] == {"rack": "a", "zone": 1.0}
    assert document["master_hostname"] == "127.0.0.1" and document["flags"] == {"port": "5051"}
    [fw] = document["frameworks"]
    [executor] = fw["executors"]
    assert executor["directory"] == "/sb/c1" and executor["container"] == "c1"
    [rendered] = executor["tasks"]
    assert rendered["resources"]["cpus"] == 0.5 and rendered["state"] == "TASK_RUNNING"
    assert rendered["statuses"] == [{"state": "TASK_RUNNING", "timestamp": 5.0}]
    json.dumps(document)  # all plain JSON


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(list(argv))


def test_flags_build_the_config(tmp_path: Path) -> None:
    args = parse_flags(
        "--master",
        "m:5050",
        "--work_dir",
        str(tmp_path),
        "--resources",
        "cpus:3;mem:512",
        "--attributes",
        "rack:b",
        "--executor_shutdown_grace_period",
        "2secs",
        "--switch_user",
        "false",
    )
    config = build_config(args)
    assert config.resources.scalar("cpus") == 3.0 and config.resources.scalar("mem") == 512.0
    assert config.resources.scalar("disk") > 0  # detected, as Mesos does for what --resources leaves out
    assert config.resources.ranges("ports") == [(31000, 32000)]
    assert config.executor_shutdown_grace_period_s == 2.0 and config.switch_user is False
    assert config.flags["resources"] == "cpus:3;mem:512"


def test_flags_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTE_MASTER", "env-master:5050")
    monkeypatch.setenv("BUTTE_WORK_DIR", str(tmp_path))
    assert build_config(parse_flags()).master == "env-master:5050"


def test_master_and_work_dir_are_required(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="master"):
        build_config(parse_flags("--work_dir", str(tmp_path)))
    with pytest.raises(ValidationError, match="work_dir"):
        build_config(parse_flags("--master", "m:5050"))


def test_default_resources_are_detected(tmp_path: Path) -> None:
    detected = agent_resources(None, str(tmp_path))
    assert detected.scalar("cpus") >= 1 and detected.scalar("mem") > 0
    assert detected.ranges("ports") == [(31000, 32000)]
