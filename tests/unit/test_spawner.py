"""The agent's spawner (butte-isolate --spawner): butte-isolate runs started by one process of the agent's."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.containerizer.isolators.helper import _spawns, _works, build_helper
from butte.containerizer.launcher import Launcher, LaunchSpec
from butte.containerizer.process import Process, read_exit_status
from butte.containerizer.spawner import MAX_REQUEST_BYTES, encode_request
from butte.testing.wait import until

HELPER = build_helper()
pytestmark = pytest.mark.skipif(HELPER is None, reason="needs a C compiler for butte-isolate")
PATH = os.environ.get("PATH", "/usr/bin:/bin")
# Until the test creates `go` in the working directory (30 s at most: a failed test leaves nothing running).
AWAIT_GO = "i=0; while [ ! -e go ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; "


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()[0].decode()


def proc_file(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def recorded(tmp_path: Path, script: str, **changes: object) -> LaunchSpec:
    """``script`` under butte-isolate --exit-status: a run the spawner starts."""
    assert HELPER is not None
    fields: dict[str, object] = {
        "argv": ("/bin/sh", "-c", script),
        "env": {"PATH": PATH},
        "cwd": str(tmp_path),
        "stdout_path": str(tmp_path / "stdout"),
        "stderr_path": str(tmp_path / "stderr"),
        "exit_status_path": str(tmp_path / "status"),
        "status_helper": HELPER,
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    assert HELPER is not None
    running = Launcher()
    running.spawn_through(HELPER)
    yield running
    running.close()


async def test_a_run_starts_as_the_spawners_child_and_its_end_is_reported(launcher: Launcher, tmp_path: Path) -> None:
    script = AWAIT_GO + "echo out $FOO; echo err >&2; exit 3"
    process = await launcher.launch(recorded(tmp_path, script, env={"FOO": "bar"}))
    spawner = parent_of(process.pid)
    assert spawner not in (os.getpid(), 1)
    # A session (and process group) of its own, as Popen gives; made by the child, maybe after the agent hears
    # of it (Process.signal_group then signals the child alone).
    await until(lambda: os.getsid(process.pid) == process.pid, timeout=10)
    (tmp_path / "go").touch()
    assert await process.wait() == 3
    assert (tmp_path / "stdout").read_text() == "out bar\n"
    assert (tmp_path / "stderr").read_text() == "err\n"
    assert read_exit_status(str(tmp_path / "status")) == 3
    (tmp_path / "stdout").unlink()
    signals = await launcher.launch(recorded(tmp_path, "exec grep -E '^Sig(Ign|Blk)' /proc/self/status"))
    assert await signals.wait() == 0
    assert (tmp_path / "stdout").read_text().split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]  # as from Popen
    second = await launcher.launch(recorded(tmp_path, "exit 0"))
    assert parent_of(second.pid) == spawner  # one spawner for every run
    assert await second.wait() == 0


async def test_its_children_get_the_agents_descriptor_limit_while_it_takes_the_hard_one(tmp_path: Path) -> None:
    assert HELPER is not None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 1000) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    launcher = Launcher()
    launcher.spawn_through(HELPER)
    try:
        process = await launcher.launch(recorded(tmp_path, AWAIT_GO + "ulimit -n"))
        spawner = parent_of(process.pid)
        with open(f"/proc/{spawner}/limits") as limits:
            files = next(line for line in limits if line.startswith("Max open files")).split()
        assert files[3:5] == [str(hard), str(hard)]  # a pidfd per running child: as many as it may
        (tmp_path / "go").touch()
        assert await process.wait() == 0
        assert (tmp_path / "stdout").read_text().strip() == str(lowered)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        launcher.close()


async def test_a_kill_reaches_the_group_and_what_the_leader_leaves_behind_is_killed(
    launcher: Launcher, tmp_path: Path
) -> None:
    process = await launcher.launch(recorded(tmp_path, "sleep 30 & echo $! > child; exec sleep 30"))
    await until(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip(), timeout=10)
    child = int((tmp_path / "child").read_text())
    process.signal_group(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGTERM
    await until(lambda: not os.path.exists(f"/proc/{child}") or state_of(child) == "Z", timeout=10)

    leader_only = await launcher.launch(recorded(tmp_path, "sleep 30 & echo $! > orphan; exit 0"))
    assert await asyncio.wait_for(leader_only.wait(), 10) == 0
    orphan = int((tmp_path / "orphan").read_text())
    await until(lambda: not os.path.exists(f"/proc/{orphan}") or state_of(orphan) == "Z", timeout=10)


async def test_a_kill_the_moment_it_is_started_is_not_lost(launcher: Launcher, tmp_path: Path) -> None:
    # The agent hears of a child before the child has made its session: a kill then reaches the child alone.
    processes = []
    for _ in range(20):
        processes.append(await launcher.launch(recorded(tmp_path, "exec sleep 30")))
        processes[-1].signal_group(signal.SIGKILL)
    codes = await asyncio.wait_for(asyncio.gather(*(process.wait() for process in processes)), 10)
    assert codes == [-signal.SIGKILL] * 20


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pid namespaces)")
async def test_a_run_asked_for_in_a_pid_namespace_is_its_init(launcher: Launcher, tmp_path: Path) -> None:
    assert HELPER is not None
    script = "echo $$; ls /proc | grep -c '^[0-9]'"
    spec = recorded(tmp_path, script, prelude=(HELPER, "--pidns", "--"), new_pid_namespace=True)
    process = await launcher.launch(spec)
    assert parent_of(process.pid) != os.getpid()
    assert await process.wait() == 0
    task_pid, visible = (tmp_path / "stdout").read_text().split()
    assert task_pid == "2"  # the helper is pid 1, the task its child
    assert int(visible) <= 4  # init, the task's shell, ls and grep: none of the host's


async def test_a_request_too_large_for_one_datagram_is_started_directly(launcher: Launcher, tmp_path: Path) -> None:
    share = MAX_REQUEST_BYTES // 3  # each within what exec takes for one string (128 KiB)
    big = {"PATH": PATH, **{f"BIG{i}": "x" * share for i in range(4)}}
    assert encode_request(1, ["x"], big, "/", 0) is None
    process = await launcher.launch(recorded(tmp_path, "echo ${#BIG3}; exit 4", env=big))
    assert parent_of(process.pid) == os.getpid()
    assert await process.wait() == 4
    assert (tmp_path / "stdout").read_text().strip() == str(share)


async def test_a_lost_spawners_runs_are_watched_by_pid_and_the_next_launch_starts_another(
    launcher: Launcher, tmp_path: Path
) -> None:
    process = await launcher.launch(recorded(tmp_path, AWAIT_GO + "exit 7"))
    spawner = parent_of(process.pid)
    os.kill(spawner, signal.SIGKILL)
    await until(lambda: parent_of(process.pid) != spawner, timeout=10)
    (tmp_path / "next").mkdir()
    next_one = await launcher.launch(recorded(tmp_path / "next", "exit 0"))
    assert parent_of(next_one.pid) not in (spawner, os.getpid())
    assert await asyncio.wait_for(next_one.wait(), 10) == 0
    (tmp_path / "go").touch()
    assert await asyncio.wait_for(process.wait(), 10) == 7  # from the status its helper recorded


async def test_a_failing_setup_is_the_runs_end_not_the_spawners(launcher: Launcher, tmp_path: Path) -> None:
    process = await launcher.launch(recorded(tmp_path, "exit 0", cwd=str(tmp_path / "gone")))
    assert await asyncio.wait_for(process.wait(), 10) == 125
    assert "cannot enter" in (tmp_path / "stderr").read_text()
    after = await launcher.launch(recorded(tmp_path, "exit 5"))
    assert await after.wait() == 5


def test_the_spawner_keeps_no_pipe_of_the_agents_open(tmp_path: Path) -> None:
    # An agent whose output a supervisor reads through a pipe: the pipe ends with the agent, not with its tasks.
    script = f"""
import asyncio
from butte.containerizer.launcher import Launcher, LaunchSpec
async def main():
    launcher = Launcher()
    launcher.spawn_through({HELPER!r})
    spec = LaunchSpec(argv=("sleep", "30"), env={{"PATH": {PATH!r}}}, cwd={str(tmp_path)!r},
        stdout_path={str(tmp_path / "out")!r}, stderr_path={str(tmp_path / "err")!r},
        exit_status_path={str(tmp_path / "status")!r}, status_helper={HELPER!r})
    process = await launcher.launch(spec)
    print(process.pid, flush=True)
asyncio.run(main())
"""
    agent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, _ = agent.communicate(timeout=20)  # EOF on both pipes once the "agent" has exited
    finally:
        agent.kill()
    run = int(out.split()[0])
    assert os.getsid(run) == run  # still running, in its own group: end it
    os.killpg(run, signal.SIGKILL)


# ---- the protocol itself (isolators/helper/spawner.c) ----


@pytest.fixture
def raw_spawner() -> Iterator[socket.socket]:
    assert HELPER is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    spawner = subprocess.Popen([HELPER, "--spawner", str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    ours.settimeout(10)
    yield ours
    ours.close()
    assert spawner.wait(timeout=10) == 0  # it leaves once the agent's end is closed and its children are gone


def launch_raw(sock: socket.socket, token: int, tmp_path: Path, script: str) -> None:
    assert HELPER is not None
    data = encode_request(token, [HELPER, "--", "/bin/sh", "-c", script], {"PATH": PATH}, str(tmp_path), 0)
    assert data is not None
    with open(tmp_path / "out", "ab") as out:
        socket.send_fds(sock, [data], [out.fileno(), out.fileno()])


def test_an_ended_child_is_kept_until_the_agent_has_noted_it(raw_spawner: socket.socket, tmp_path: Path) -> None:
    launch_raw(raw_spawner, 41, tmp_path, "exit 9")
    kind, token, pid = raw_spawner.recv(128).split()
    assert (kind, int(token)) == (b"S", 41)
    kind, ended, code = raw_spawner.recv(128).split()
    assert (kind, ended, int(code)) == (b"X", pid, 9)
    assert state_of(int(pid)) == "Z"  # its pid (its group's id) is not free for another process yet
    raw_spawner.send(b"R\0" + pid + b"\0")
    _wait_gone(int(pid))


def _wait_gone(pid: int) -> None:
    asyncio.run(until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10))


def test_a_request_it_cannot_read_is_refused_with_its_token(raw_spawner: socket.socket, tmp_path: Path) -> None:
    with open(tmp_path / "out", "ab") as out:
        socket.send_fds(raw_spawner, [b"L\x0012\x000\x00/\x003\x00only-one\x00"], [out.fileno(), out.fileno()])
    assert raw_spawner.recv(128).split() == [b"E", b"12", b"22"]  # EINVAL
    raw_spawner.send(b"nonsense")  # ignored
    launch_raw(raw_spawner, 13, tmp_path, "exit 0")
    assert raw_spawner.recv(128).split()[:2] == [b"S", b"13"]


def test_when_the_agent_goes_its_children_run_on_and_it_leaves_after_them(
    raw_spawner: socket.socket, tmp_path: Path
) -> None:
    launch_raw(raw_spawner, 1, tmp_path, AWAIT_GO)
    pid = int(raw_spawner.recv(128).split()[2])
    raw_spawner.close()
    assert state_of(pid) != "Z"
    (tmp_path / "go").touch()
    _wait_gone(pid)  # reaped by the spawner (its parent), which then ends (the fixture waits for it)


def test_the_process_api_without_a_watcher_takes_its_end_from_whoever_reports_it() -> None:
    async def scenario() -> None:
        process = Process(os.getpid(), asyncio.get_running_loop(), None)
        assert process.returncode is None
        process.ended(4)
        process.ended(5)  # the first report stands
        assert await process.wait() == 4

    asyncio.run(scenario())


# ---- runs share the spawner's memory (butte-isolate's run_state.c, spawner_slots.c) ----

CAP_SYS_RESOURCE = 24
BURST = 160  # more runs in flight than the spawner keeps warm slots for (64)


def may_lower_oom_scores() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (containers often drop it, root or not)."""
    with open("/proc/self/status") as status:
        effective = int(next(line for line in status if line.startswith("CapEff:")).split()[1], 16)
    return bool(effective >> CAP_SYS_RESOURCE & 1)


def held_run(tmp_path: Path, index: int, script: str) -> LaunchSpec:
    """Run ``index``: says it has ``started``, then runs ``script`` once ``go`` is in ``tmp_path`` (so that a burst
    is in flight at once); in a directory of its own, every other one in a pid namespace of its own where the
    machine allows."""
    assert HELPER is not None
    own = tmp_path / f"run{index}"
    own.mkdir()
    wait = f": > started; i=0; while [ ! -e {tmp_path}/go ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; "
    in_namespace = os.geteuid() == 0 and index % 2 == 1
    return LaunchSpec(
        argv=("/bin/sh", "-c", wait + script),
        env={"PATH": PATH, "TOKEN": f"token-{index}", "CODE": str(index % 100)},
        cwd=str(own),
        stdout_path=str(own / "stdout"),
        stderr_path=str(own / "stderr"),
        exit_status_path=str(own / "status"),
        status_helper=HELPER,
        prelude=(HELPER, "--pidns", "--") if in_namespace else (),
        new_pid_namespace=in_namespace,
    )


def resident_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


async def burst(launcher: Launcher, tmp_path: Path, first: int) -> tuple[list[Process], int, int]:
    """BURST held runs from index ``first``, all started: the processes, the spawner's pid and its resident kB
    meanwhile."""
    runs = [held_run(tmp_path, index, 'echo "$TOKEN $(pwd)"; exit $CODE') for index in range(first, first + BURST)]
    processes = [await launcher.launch(run) for run in runs]
    spawner = parent_of(processes[0].pid)
    await until(lambda: all(Path(run.cwd, "started").exists() for run in runs), timeout=30)
    return processes, spawner, resident_kb(spawner)


def assert_each_ran_as_asked(tmp_path: Path, first: int, codes: list[int]) -> None:
    for index, code in zip(range(first, first + BURST), codes, strict=True):
        own = tmp_path / f"run{index}"
        assert code == index % 100
        assert read_exit_status(str(own / "status")) == index % 100
        assert (own / "stdout").read_text() == f"token-{index} {own}\n"
        assert (own / "stderr").read_text() == ""


async def test_runs_in_flight_together_each_keep_their_own_command_and_end_and_a_burst_hands_its_memory_back(
    launcher: Launcher, tmp_path: Path
) -> None:
    for wave in range(2):  # the second wave runs in slots the first used: warm ones, and ones handed back
        first = wave * BURST
        processes, spawner, resident_during = await burst(launcher, tmp_path, first)
        (tmp_path / "go").touch()
        codes = await asyncio.wait_for(asyncio.gather(*(process.wait() for process in processes)), 60)
        assert_each_ran_as_asked(tmp_path, first, codes)
        # Ended runs' slots past the warm ones hold no pages: the burst's memory is the kernel's again.
        assert resident_kb(spawner) < resident_during * 0.7, (resident_kb(spawner), resident_during)
        (tmp_path / "go").unlink()


@pytest.mark.skipif(not may_lower_oom_scores(), reason="lowering an OOM score takes CAP_SYS_RESOURCE")
async def test_tasks_keep_the_agents_oom_score_while_the_spawner_and_its_runs_are_out_of_the_killers_reach(
    tmp_path: Path,
) -> None:
    assert HELPER is not None
    score_file = Path("/proc/self/oom_score_adj")
    own = score_file.read_text()
    score_file.write_text("321")  # what the spawner inherits from its agent
    launcher = Launcher()
    try:
        launcher.spawn_through(HELPER)
        # The helper waits for the task: its parent. Both in the same run's memory until the task's exec.
        run = held_run(tmp_path, 0, "cat /proc/self/oom_score_adj /proc/$PPID/oom_score_adj")
        (tmp_path / "go").touch()
        process = await launcher.launch(run)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert (tmp_path / "run0" / "stdout").read_text().split() == ["321", "-1000"]
    finally:
        launcher.close()
        score_file.write_text(own)


def test_a_build_is_kept_only_when_its_spawner_starts_a_run_and_reports_its_end(tmp_path: Path) -> None:
    assert HELPER is not None
    # A stand-in that passes the plain smoke run (exit status recorded) but has no working spawner.
    stand_in = tmp_path / "stand-in"
    stand_in.write_text('#!/bin/sh\nif [ "$1" = --exit-status ]; then echo 3 > "$2"; exit 3; fi\nexit 0\n')
    stand_in.chmod(0o755)
    assert _works(stand_in)
    assert not _spawns(stand_in)
    assert _spawns(Path(HELPER))
