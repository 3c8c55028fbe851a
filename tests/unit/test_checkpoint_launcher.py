"""The exit-status wrapper and adopting a process after an agent restart (it is no longer our child)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from butte.containerizer.launcher import Launcher, LaunchSpec, start_process
from butte.containerizer.process import UNKNOWN_EXIT_CODE, adopt_process, read_exit_status
from butte.testing.wait import until


def spec(tmp_path: Path, script: str, *, wrapped: bool = True) -> LaunchSpec:
    return LaunchSpec(
        argv=("/bin/sh", "-c", script),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=str(tmp_path),
        stdout_path=str(tmp_path / "stdout"),
        stderr_path=str(tmp_path / "stderr"),
        exit_status_path=str(tmp_path / ".status") if wrapped else None,
    )


async def test_wrapped_exit_code_is_recorded_and_returned(tmp_path: Path) -> None:
    launcher = Launcher()
    try:
        process = await launcher.launch(spec(tmp_path, "exit 3"))
        assert await process.wait() == 3
    finally:
        launcher.close()
    assert (tmp_path / ".status").read_text().strip() == "3"
    assert read_exit_status(str(tmp_path / ".status")) == 3


async def test_a_signal_is_recorded_as_the_signal(tmp_path: Path) -> None:
    launcher = Launcher()
    try:
        process = await launcher.launch(spec(tmp_path, "touch started; exec sleep 30"))
        await until(lambda: (tmp_path / "started").exists(), timeout=10)  # the wrapper's trap is set by then
        process.signal_group(signal.SIGTERM)  # the wrapper survives it and records how the command ended
        assert await process.wait() == -signal.SIGTERM
    finally:
        launcher.close()
    assert read_exit_status(str(tmp_path / ".status")) == -signal.SIGTERM


async def test_launcher_reports_started_processes_and_hands_back_reattached_ones(tmp_path: Path) -> None:
    started: list[int] = []
    launcher = Launcher(on_started=lambda launched, pid: started.append(pid))
    try:
        first = await launcher.launch(spec(tmp_path, "exit 0", wrapped=False))
        assert started == [first.pid]
        launcher.reattach(str(tmp_path), first)
        assert await launcher.launch(spec(tmp_path, "exit 1", wrapped=False)) is first
        assert started == [first.pid]
        assert await first.wait() == 0
    finally:
        launcher.close()


async def test_adopted_process_exit_code_comes_from_the_status_file(tmp_path: Path) -> None:
    go = tmp_path / "go"
    popen = start_process(spec(tmp_path, f"while [ ! -e {go} ]; do sleep 0.02; done; exit 7"))
    try:
        adopted = adopt_process(popen.pid, str(tmp_path / ".status"), asyncio.get_running_loop())
        assert adopted is not None and adopted.returncode is None
        go.touch()
        # The test is still the parent, so it must reap the child for the pidfd to signal the exit.
        await asyncio.get_running_loop().run_in_executor(None, popen.wait)
        assert await asyncio.wait_for(adopted.wait(), timeout=10) == 7
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def test_missing_or_garbled_status_is_unknown(tmp_path: Path) -> None:
    assert read_exit_status(None) == UNKNOWN_EXIT_CODE
    assert read_exit_status(str(tmp_path / "absent")) == UNKNOWN_EXIT_CODE
    (tmp_path / "garbled").write_text("nope")
    assert read_exit_status(str(tmp_path / "garbled")) == UNKNOWN_EXIT_CODE


async def test_adopting_a_gone_pid_gives_none() -> None:
    assert adopt_process(2**22 + 7, None, asyncio.get_running_loop()) is None
