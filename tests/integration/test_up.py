"""``butte up``: a local cluster in the foreground that Ctrl-C (or SIGTERM) stops with nothing left running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from butte.cli.up_cmd import busy_ports
from butte.testing import process as proc
from butte.testing.ports import free_port
from butte.testing.pytest_plugin import skip_without_services
from butte.testing.wait import until

START_S = 60.0


def free_port_pair() -> tuple[int, int]:
    """A free port whose successor is free too (``butte up`` puts agents on consecutive ports)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and not busy_ports([port, port + 1]):
            return port, port + 1
    raise RuntimeError("no two consecutive free ports")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[-1].split()[1]) == pid:
            found.append(int(entry))
    return found


def master_slaves(port: int) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=5) as response:
        slaves: list[dict[str, object]] = json.load(response)["slaves"]
        return slaves


class UpProcess:
    """``butte up`` in its own process group, as a terminal would run it; output in a file."""

    def __init__(self, tmp_path: Path, master_port: int, agent_port: int) -> None:
        self.output = tmp_path / "up.out"
        self.master_port = master_port
        self.marathon_port = free_port()
        argv = [sys.executable, "-m", "butte.cli.main", "up", f"--work_dir={tmp_path / 'state'}"]
        argv += [f"--port={master_port}", f"--agent_port={agent_port}", "--agents=2"]
        argv += [f"--marathon_port={self.marathon_port}"]
        with self.output.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    async def wait_until_up(self) -> None:
        await until(lambda: "Press Ctrl-C" in self.text() or self.popen.poll() is not None, timeout=START_S)
        assert self.popen.poll() is None, self.text()

    async def wait_exit(self) -> int:
        await until(lambda: self.popen.poll() is not None, timeout=30, what="butte up to exit")
        return self.popen.returncode


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    skip_without_services()
    master_port, agent_port = free_port_pair()
    started = UpProcess(tmp_path, master_port, agent_port)
    yield started
    proc.terminate(started.popen, grace_s=20)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
async def test_up_runs_a_cluster_and_stops_cleanly(up: UpProcess, stop_signal: int) -> None:
    await up.wait_until_up()
    banner = up.text()
    assert f"master: http://127.0.0.1:{up.master_port}" in banner
    assert f"butte run --master 127.0.0.1:{up.master_port} -- echo hello" in banner
    assert f"marathon: http://127.0.0.1:{up.marathon_port}" in banner
    await until(lambda: len(master_slaves(up.master_port)) == 2, timeout=START_S, ignore=(OSError,))
    children = children_of(up.popen.pid)
    assert len(children) == 4, children  # the master, two agents and Marathon

    # Ctrl-C in a terminal signals the whole foreground process group.
    os.killpg(up.popen.pid, stop_signal)

    assert await up.wait_exit() == 0, up.text()
    assert "butte up: stopped" in up.text()
    assert not [pid for pid in children if proc.is_alive(pid)]


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    skip_without_services()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "butte.cli.main", "up", f"--work_dir={tmp_path}", f"--port={port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port(s) [{port}] already in use" in result.stderr
