"""The launcher spawns real processes: argv, environment, sandbox files, exit codes, signals, kills."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.launcher import Launcher, LaunchError, LaunchSpec, lookup_user
from butte.containerizer.sandbox import create_sandbox, executor_runs_dir
from butte.core.errors import NotFound
from butte.executor.command import CommandTask
from butte.testing.wait import until


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def spec(sandbox: Path, *argv: str, env: dict[str, str] | None = None, **extra: object) -> LaunchSpec:
    return LaunchSpec(
        argv=argv,
        env={"PATH": os.environ["PATH"], **(env or {})},
        cwd=str(sandbox),
        stdout_path=str(sandbox / "stdout"),
        stderr_path=str(sandbox / "stderr"),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def launcher() -> AsyncIterator[Launcher]:
    running = Launcher()
    yield running
    running.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    return Path(create_sandbox(executor_runs_dir(str(tmp_path), "a", "f", "e"), "c1", None))


def test_sandbox_layout_and_latest_link(tmp_path: Path) -> None:
    runs = executor_runs_dir(str(tmp_path), "A", "F", "E")
    first = create_sandbox(runs, "c1", None)
    assert first == str(tmp_path / "slaves/A/frameworks/F/executors/E/runs/c1")
    assert os.readlink(os.path.join(runs, "latest")) == "c1"
    create_sandbox(runs, "c2", None)
    assert os.readlink(os.path.join(runs, "latest")) == "c2"
    assert sorted(os.listdir(runs)) == ["c1", "c2", "latest"]


async def test_launch_prepares_off_the_loop_and_creates_output_files(launcher: Launcher, tmp_path: Path) -> None:
    runs = executor_runs_dir(str(tmp_path), "A", "F", "E")
    sandbox = Path(runs) / "c1"
    prepare = functools.partial(create_sandbox, runs, "c1", None)
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", "echo hi"), prepare)
    assert await process.wait() == 0
    assert sorted(os.listdir(sandbox)) == ["stderr", "stdout"]
    assert (sandbox / "stdout").read_text() == "hi\n"


async def test_launch_reports_a_failed_prepare(launcher: Launcher, tmp_path: Path) -> None:
    def broken() -> None:
        raise LaunchError("no sandbox")

    with pytest.raises(LaunchError, match="no sandbox"):
        await launcher.launch(spec(tmp_path, "/bin/true"), broken)


async def test_shell_command_output_cwd_and_env(launcher: Launcher, sandbox: Path) -> None:
    process = await launcher.launch(
        spec(sandbox, "/bin/sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2', env={"GREETING": "hi"})
    )
    assert await process.wait() == 0
    assert (sandbox / "stdout").read_text() == f"hi from {sandbox}\n"
    assert (sandbox / "stderr").read_text() == "oops\n"


async def test_argv_is_passed_without_a_shell(launcher: Launcher, sandbox: Path) -> None:
    process = await launcher.launch(spec(sandbox, "/bin/echo", "a b", "$HOME"))
    assert await process.wait() == 0
    assert (sandbox / "stdout").read_text() == "a b $HOME\n"


async def test_exit_code_and_signal_are_reported(launcher: Launcher, sandbox: Path) -> None:
    assert await (await launcher.launch(spec(sandbox, "/bin/sh", "-c", "exit 3"))).wait() == 3
    killed = await launcher.launch(spec(sandbox, "/bin/sh", "-c", "kill -KILL $$"))
    assert await killed.wait() == -signal.SIGKILL
    assert killed.returncode == -signal.SIGKILL


async def test_process_leads_its_own_session(launcher: Launcher, sandbox: Path) -> None:
    process = await launcher.launch(spec(sandbox, "/bin/sleep", "5"))
    try:
        assert os.getpgid(process.pid) == process.pid
        assert os.getsid(process.pid) == process.pid
    finally:
        await process.kill(grace_s=1.0)


async def test_missing_executable_is_a_launch_error(launcher: Launcher, sandbox: Path) -> None:
    with pytest.raises(LaunchError, match="no-such-binary"):
        await launcher.launch(spec(sandbox, "/no-such-binary"))


async def test_kill_terminates_gracefully_first(launcher: Launcher, sandbox: Path) -> None:
    process = await launcher.launch(spec(sandbox, "/bin/sleep", "30"))
    started = time.monotonic()
    assert await process.kill(grace_s=10.0) == -signal.SIGTERM
    assert time.monotonic() - started < 5.0


async def test_kill_escalates_and_leaves_nothing_behind(launcher: Launcher, sandbox: Path) -> None:
    script = (
        "trap '' TERM; "
        "sh -c 'trap \"\" TERM; sleep 60' & echo $! >> pids; "
        "sleep 60 & echo $! >> pids; "
        "echo $$ >> pids; wait"
    )
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", script))
    pids_file = sandbox / "pids"
    await until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 3)
    started = time.monotonic()
    assert await process.kill(grace_s=0.3) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.3
    pids = [int(pid) for pid in pids_file.read_text().split()]
    await until(lambda: all(gone(pid) for pid in pids))


async def test_children_left_behind_by_an_exited_leader_are_killed(launcher: Launcher, sandbox: Path) -> None:
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", "sleep 60 & echo $! > child; exit 0"))
    assert await process.wait() == 0
    child = int((sandbox / "child").read_text())
    await until(lambda: gone(child))


async def test_exit_status_wrapper_records_the_status_in_the_sandbox(launcher: Launcher, sandbox: Path) -> None:
    status_file = sandbox / "exit_status"
    process = await launcher.launch(
        spec(sandbox, "/bin/sh", "-c", "echo out; exit 7", exit_status_path=str(status_file))
    )
    assert await process.wait() == 7
    assert status_file.read_text() == "7\n"
    assert (sandbox / "stdout").read_text() == "out\n"


HELPER = build_helper()


@pytest.mark.skipif(HELPER is None, reason="no C compiler to build butte-isolate; the sh wrapper is used then")
@pytest.mark.parametrize("code", [0, 7])
async def test_the_helper_records_the_exit_status_like_the_wrapper(
    launcher: Launcher, sandbox: Path, code: int
) -> None:
    status_file = sandbox / "exit_status"
    extra = {"exit_status_path": str(status_file), "status_helper": HELPER}
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", f"echo out; exit {code}", **extra))
    assert await process.wait() == code
    assert status_file.read_text() == f"{code}\n" and (sandbox / "stdout").read_text() == "out\n"


@pytest.mark.skipif(HELPER is None, reason="no C compiler to build butte-isolate; the sh wrapper is used then")
async def test_the_helper_outlives_a_group_sigterm_and_records_the_signal(launcher: Launcher, sandbox: Path) -> None:
    status_file = sandbox / "exit_status"
    extra = {"exit_status_path": str(status_file), "status_helper": HELPER}
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", "echo $$ > pid; exec sleep 60", **extra))
    await until(lambda: (sandbox / "pid").exists() and (sandbox / "pid").read_text().strip())
    process.signal_group(signal.SIGTERM)  # as a kill does: the helper must survive it to record the status
    assert await asyncio.wait_for(process.wait(), timeout=10) == -signal.SIGTERM
    assert status_file.read_text() == f"{128 + signal.SIGTERM}\n"


async def test_many_concurrent_processes_are_all_reaped(launcher: Launcher, sandbox: Path) -> None:
    processes = await asyncio.gather(*(launcher.launch(spec(sandbox, "/bin/true")) for _ in range(50)))
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), timeout=10)
    assert codes == [0] * 50


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_runs_as_another_user_when_root(launcher: Launcher, sandbox: Path) -> None:
    nobody = lookup_user("nobody")
    process = await launcher.launch(spec(sandbox, "/bin/sh", "-c", "id -u; id -g", user=nobody))
    assert await process.wait() == 0
    assert (sandbox / "stdout").read_text().split() == [str(nobody.uid), str(nobody.gid)]
    assert (sandbox / "stdout").stat().st_uid == nobody.uid  # the task owns its output files


def test_unknown_user_is_not_found() -> None:
    with pytest.raises(NotFound, match="no-such-user-xyz"):
        lookup_user("no-such-user-xyz")


async def test_a_launch_that_fails_unexpectedly_fails_the_task_instead_of_leaving_it_starting(
    launcher: Launcher, sandbox: Path
) -> None:
    updates: list[tuple[str, str | None, str | None]] = []

    def report(state: str, *, source: str = "", message: str | None = None, reason: str | None = None) -> None:
        updates.append((state, message, reason))

    def broken_step() -> None:
        raise RuntimeError("a bug in a set-up step")

    task = CommandTask(spec(sandbox, "/bin/true"), report, launcher, prepare=broken_step)  # type: ignore[arg-type]
    task.start()
    assert await asyncio.wait_for(task.wait(), 10) == "TASK_FAILED"
    state, message, reason = updates[-1]
    assert (state, reason) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
    assert message is not None and "a bug in a set-up step" in message


async def test_a_process_whose_start_cannot_be_recorded_is_killed_not_left_running(sandbox: Path) -> None:
    started: list[int] = []

    def record(spec: LaunchSpec, pid: int) -> None:  # the agent checkpoints the pid here: say the disk is full
        started.append(pid)
        raise OSError(28, "No space left on device")

    launcher = Launcher(on_started=record)
    try:
        with pytest.raises(LaunchError, match="No space left on device"):
            await launcher.launch(spec(sandbox, "sleep", "60"))
        assert len(started) == 1 and gone(started[0])  # killed and reaped: nothing runs unseen
    finally:
        launcher.close()
