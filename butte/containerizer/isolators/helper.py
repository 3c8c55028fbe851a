"""``butte-isolate``, the small C program that lands a task in its cgroups and pid namespace in one exec.

Compiled once per version of its source into the user's cache directory (``$XDG_CACHE_HOME/butte``), with
the host's C compiler: without the C library where the source has the system-call glue for the machine
(x86-64, arm64), else statically, else as the compiler likes. Each build must pass a smoke run before it is
kept. Measured on this 2-core VM (400 spawns of ``/bin/true``, cpu of the children per spawn): direct 1.0 ms;
through the helper built with glibc 1.55 ms, without it 1.0 ms; with ``--pidns`` 2.9 ms and 2.1 ms. glibc's
start-up asks the CPU about its caches with ``cpuid``, which traps to the hypervisor.
Where there is no compiler the agent falls back to ``sh`` + util-linux ``unshare``: same behaviour, one exec
more.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from butte.containerizer.spawner import encode_request

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "helper" / "butte_isolate.c"
COMPILE_TIMEOUT_S = 120.0
SMOKE_TIMEOUT_S = 10.0
SMOKE_EXIT_CODE = 3
# Tried in order. Without the C library: no stack protector or builtins to call into it, and no turning the
# byte loops of its own memset/memcpy back into calls to themselves.
BUILDS: tuple[tuple[str, ...], ...] = (
    (
        "-static",
        "-nostdlib",
        "-ffreestanding",
        "-fno-builtin",
        "-fno-stack-protector",
        "-fno-tree-loop-distribute-patterns",
        "-DBUTTE_NOLIBC",
    ),
    ("-static",),
    (),
)


def cache_dir() -> Path:
    """Where built helpers are kept."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "butte"


def build_helper(directory: Path | None = None, builds: Sequence[Sequence[str]] = BUILDS) -> str | None:
    """The helper's path, compiling it first if this version is not built yet; None when it cannot be.

    ``builds`` are the compiler flags to try, in order (the first that builds and passes the smoke run wins).
    """
    try:  # the main source includes the others in its directory: a change to any makes a new build
        source = b"".join(path.read_bytes() for path in sorted(SOURCE.parent.glob("*.c")))
    except OSError:
        return None
    target = (directory or cache_dir()) / f"butte-isolate-{hashlib.sha256(source).hexdigest()[:16]}"
    if os.access(target, os.X_OK):
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("No C compiler: isolated tasks start through sh and unshare")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # agents may build at once
    for flags in builds:
        try:
            built = subprocess.run(
                [compiler, "-O2", *flags, "-o", str(partial), str(SOURCE)],
                capture_output=True,
                timeout=COMPILE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            break
        if built.returncode == 0 and _works(partial) and _spawns(partial):
            os.replace(partial, target)
            return str(target)
    with contextlib.suppress(OSError):
        partial.unlink()
    log.warning("Could not build %s; isolated tasks start through sh and unshare", SOURCE.name)
    return None


def _works(helper: Path) -> bool:
    """Whether a freshly built helper runs a command and records its exit status as it should."""
    status = helper.with_name(f"{helper.name}.status")
    try:
        ran = subprocess.run(
            [str(helper), "--exit-status", str(status), "--", "sh", "-c", "exit 3"],
            capture_output=True,
            timeout=SMOKE_TIMEOUT_S,
            check=False,
        )
        return ran.returncode == SMOKE_EXIT_CODE and status.read_text() == f"{SMOKE_EXIT_CODE}\n"
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        with contextlib.suppress(OSError):
            status.unlink()


def _spawns(helper: Path) -> bool:
    """Whether a freshly built helper's spawner starts a run and reports its end: its clone and pidfd glue is
    the machine's own assembly, which the plain run of :func:`_works` does not all reach."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs, open(os.devnull, "r+b") as null:
        try:
            spawner = subprocess.Popen(
                [str(helper), "--spawner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return False
        theirs.close()
        try:
            command = [str(helper), "--", "sh", "-c", f"exit {SMOKE_EXIT_CODE}"]
            request = encode_request(1, command, {"PATH": os.defpath}, "/", 0)
            assert request is not None
            ours.settimeout(SMOKE_TIMEOUT_S)
            socket.send_fds(ours, [request], [null.fileno(), null.fileno()])
            started, ended = ours.recv(64).split(), ours.recv(64).split()  # "S 1 PID", then "X PID CODE"
            return started[:2] == [b"S", b"1"] and ended == [b"X", started[2], str(SMOKE_EXIT_CODE).encode()]
        except (OSError, IndexError):
            return False
        finally:
            ours.close()  # the spawner reaps what it started and leaves
            try:
                spawner.wait(SMOKE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                spawner.kill()
                spawner.wait()
