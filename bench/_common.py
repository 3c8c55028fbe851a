"""Helpers shared by the benchmarks: a local cluster, a framework, percentiles, ``name: value`` output."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from butte.scheduler.sdk import SchedulerClient
from butte.wire.mesos import FrameworkInfo

BIG_AGENT = "cpus:64;mem:65536;disk:100000;ports:[31000-32000]"


# Agents' work dirs go on the project's own disk (not a shared /tmp full of other runs' files, nor tmpfs):
# each task makes a sandbox, and the file system's metadata speed is part of what is measured.
DEFAULT_WORK_ROOT = Path(__file__).resolve().parent.parent / ".butte" / "bench"


# ext4 ioctls (linux/fs.h): read and set an inode's flags; TOPDIR asks the allocator to spread subdirectories.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread_subdirectories(root: Path) -> None:
    """Mark ``root`` as a top of a directory hierarchy (``chattr +T``), where the file system supports it.

    A run deletes the previous run's few thousand sandboxes. ext4 without a journal (this kind of VM) will not
    reuse an inode deleted in the last minute, and a new inode in the same block group is found by stepping
    over every such inode: a launch right after a clean-up spent a fifth of the machine's CPU there
    (``recently_deleted`` in ``perf``), and back-to-back runs drifted from ~490 to ~220 tasks/s. With the
    flag, each run's directory is placed in a block group of its own, away from the inodes just freed.
    """
    flags = array.array("i", [0])
    with contextlib.suppress(OSError):
        descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(descriptor, FS_IOC_GETFLAGS, flags, True)
            if not flags[0] & FS_TOPDIR_FL:
                flags[0] |= FS_TOPDIR_FL
                fcntl.ioctl(descriptor, FS_IOC_SETFLAGS, flags)
        finally:
            os.close(descriptor)


def fresh_work_dir(root: Path, name: str, keep: Iterable[Path] = ()) -> Path:
    """An empty directory for one benchmark's cluster; earlier runs' directories go, but those in ``keep``.

    A benchmark that starts several clusters keeps its own until it ends: deleting a run's sandboxes right
    before the next run is timed would tax that run (see :func:`spread_subdirectories`).
    """
    root.mkdir(parents=True, exist_ok=True)
    spread_subdirectories(root)
    kept = set(keep)
    for old in root.glob(f"{name}-*"):
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    # Write back what the previous run left (a thousand sandboxes just deleted) before this one is timed:
    # otherwise each run pays for the last one's file-system work, and back-to-back runs drift downwards.
    os.sync()
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def report(name: str, value: float) -> None:
    """One result line, ``name: value``, as the project's benchmarks print them."""
    print(f"{name}: {value:.3f}", flush=True)


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` (0..1) of the sorted samples, nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def median(samples: list[float]) -> float:
    """The median of the samples."""
    return statistics.median(samples)


def direct_spawn_rate(count: int) -> float:
    """Processes per second when ``count`` ``/bin/true`` are spawned in a burst and reaped: the host floor."""
    start = time.perf_counter()
    children = [subprocess.Popen(["/bin/true"], start_new_session=True) for _ in range(count)]
    for child in children:
        child.wait()
    return count / (time.perf_counter() - start)


def framework(master: str, name: str) -> SchedulerClient:
    """A scheduler client for a benchmark framework."""
    user = os.environ.get("USER") or "root"
    return SchedulerClient(master, FrameworkInfo(user=user, name=name), auto_acknowledge=True)
