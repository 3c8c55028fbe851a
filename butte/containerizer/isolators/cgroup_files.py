"""What cgroup v1 and v2 share: a container's cgroup directory, killing everything in it, removing it."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from butte.containerizer.isolators.base import read_text

# How long a kill or a removal keeps trying: processes that fork while being killed need a few rounds.
KILL_DEADLINE_S = 5.0
RETRY_PAUSE_S = 0.002


def cgroup_pids(directory: str) -> list[int]:
    """The pids in a cgroup (empty when it is gone)."""
    return [int(line) for line in (read_text(os.path.join(directory, "cgroup.procs")) or "").split()]


def kill_cgroup(directory: str, deadline_s: float = KILL_DEADLINE_S) -> bool:
    """SIGKILL every process in the cgroup until it is empty (a fork racing the kill is caught next round).

    Returns whether the cgroup emptied before the deadline.
    """
    give_up_at = time.monotonic() + deadline_s
    while True:
        pids = cgroup_pids(directory)
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > give_up_at:
            return False
        time.sleep(RETRY_PAUSE_S)


def make_cgroup(directory: str) -> None:
    """Make a container's cgroup (nothing when it is there already: recovery prepares again).

    One ``mkdir``: its parent is nearly always there, and ``os.makedirs`` looks at every level first.

    Raises:
        OSError: it could not be made.
    """
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)


def remove_cgroup(directory: str, deadline_s: float = KILL_DEADLINE_S) -> None:
    """Remove a cgroup directory, killing what is still in it first (EBUSY) and waiting for it to be released.

    The removal is tried first: when a container ends, its cgroup is nearly always empty already (its pid
    namespace went with its init, or its one process has exited), and listing a v1 cgroup's processes costs
    more than the removal itself.

    Raises:
        OSError: it could not be removed before the deadline.
    """
    give_up_at = time.monotonic() + deadline_s
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > give_up_at:
                raise
            kill_cgroup(directory, deadline_s=0.0)
            time.sleep(RETRY_PAUSE_S)
