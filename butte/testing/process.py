"""One ``butte`` child process: started with the running interpreter, logged to a file, stopped by its pid.

Children run ``sys.executable -m butte.cli.main`` so the kit works from a virtualenv without PATH changes,
each in a session of its own so that a Ctrl-C in the terminal reaches only the parent, which then stops
them in order. Every child carries ``BUTTE_TESTKIT_ID`` in its environment: tasks and executors inherit it
(or run in a sandbox under the kit's work dir), which is how teardown finds what the agents left running.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, final

import butte
from butte.testing.wait import WaitTimeout, until

MARKER_ENV: Final = "BUTTE_TESTKIT_ID"
LOG_TAIL_LINES: Final = 40

# Children still running; an interpreter that exits without a teardown (Ctrl-C in pytest) stops them.
_live: set[subprocess.Popen[bytes]] = set()


class ProcessError(RuntimeError):
    """A kit process failed to start, died, or did not stop; the message ends with its log tail."""


def butte_source_root() -> str:
    """The directory holding the ``butte`` package, so children import the same code as this process."""
    return str(Path(butte.__file__).resolve().parent.parent)


def child_environment(marker: str) -> dict[str, str]:
    """Our environment plus the kit marker, unbuffered output, and the package on PYTHONPATH."""
    env = dict(os.environ)
    env[MARKER_ENV] = marker
    env["PYTHONUNBUFFERED"] = "1"
    paths = [butte_source_root(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@final
class ButteProcess:
    """A ``butte <subcommand>`` child: it can be started, signalled, stopped and started again."""

    def __init__(self, name: str, argv: Sequence[str], port: int, work_dir: Path, env: dict[str, str]):
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.work_dir = work_dir
        self.log_path = work_dir / f"{name}.log"
        self._env = env
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ButteProcess({self.name!r}, port={self.port}, pid={self.pid}, running={self.running})"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        """The pid of the current run, or None if never started."""
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        """True while the current run has not exited."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last run (negative: killed by that signal), None while running."""
        return self._popen.poll() if self._popen else None

    def command(self) -> list[str]:
        """The full command line of a run."""
        return [sys.executable, "-m", "butte.cli.main", *self.argv]

    def start(self) -> None:
        """Start a run, appending its output to the log.

        Raises:
            ProcessError: it is already running.
        """
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"=== kit: starting {' '.join(self.command())}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=self._env,
                start_new_session=True,
            )
        _live.add(self._popen)

    def send_signal(self, sig: int) -> None:
        """Signal the current run; nothing happens if it has exited (its pid may belong to another)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the current run to exit and return its status.

        Raises:
            ProcessError: it is still running after ``timeout`` seconds.
        """
        popen = self._popen
        if popen is None:
            raise ProcessError(f"{self.name} was never started")
        try:
            await until(lambda: popen.poll() is not None, timeout=timeout, what=f"{self.name} to exit")
        except WaitTimeout as exc:
            raise self.error(str(exc)) from None
        _live.discard(popen)
        return popen.returncode

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns the exit status (None if never started)."""
        if self._popen is None:
            return None
        self.send_signal(signal.SIGTERM)
        with contextlib.suppress(ProcessError):
            return await self.wait_exit(grace_s)
        self.send_signal(signal.SIGKILL)
        return await self.wait_exit(grace_s)

    def stop_now(self, grace_s: float = 5.0) -> None:
        """Blocking twin of ``stop`` for teardown paths that have no event loop."""
        if self._popen is not None:
            terminate(self._popen, grace_s)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of this process's log."""
        return read_tail(self.log_path, lines)

    def error(self, message: str) -> ProcessError:
        """A ProcessError whose message ends with this process's log tail."""
        return ProcessError(f"{message}\n{log_tails([self])}")


def log_tails(processes: Sequence[ButteProcess]) -> str:
    """The last lines of each process's log, for failure messages."""
    return "\n".join(f"--- last lines of {p.log_path} ---\n{p.log_tail()}" for p in processes)


def terminate(popen: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, a blocking wait of at most ``grace_s``, then SIGKILL and reap."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    _live.discard(popen)


@atexit.register
def _stop_forgotten_children() -> None:
    for popen in list(_live):
        terminate(popen, grace_s=2.0)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _ancestors() -> set[int]:
    """Our own pid and those of our parents: never candidates, even if one sits in the work dir."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return pids


def _belongs_to_kit(pid: int, marker: str, sandbox_roots: Sequence[Path]) -> bool:
    """True if the process carries our marker or runs in a directory strictly below an agent's work dir."""
    with contextlib.suppress(OSError):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        if f"{MARKER_ENV}={marker}".encode() in environ.split(b"\0"):
            return True
    with contextlib.suppress(OSError):
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        return any(root in cwd.parents for root in sandbox_roots)
    return False


def leftover_pids(marker: str, sandbox_roots: Sequence[Path]) -> list[int]:
    """Live processes our children started and left behind (tasks, executors), found through /proc."""
    if not os.path.isdir("/proc"):
        return []
    roots = [root.resolve() for root in sandbox_roots]
    mine = _ancestors()
    candidates = (int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in mine)
    return [pid for pid in candidates if _belongs_to_kit(pid, marker, roots) and is_alive(pid)]


def kill_pids(pids: Sequence[int]) -> None:
    """SIGKILL each pid that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def is_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie waiting for its parent."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def kill_leftovers_now(marker: str, sandbox_roots: Sequence[Path], timeout_s: float = 5.0) -> list[int]:
    """Blocking sweep for teardown paths with no event loop: kill leftovers, wait until they are gone."""
    pids = leftover_pids(marker, sandbox_roots)
    kill_pids(pids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(is_alive(pid) for pid in pids):
        time.sleep(0.02)
    return pids
