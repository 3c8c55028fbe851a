"""``namespaces/pid``: each task runs in a new pid namespace with its own ``/proc``.

``butte-isolate --pidns`` (isolators/helper) is the namespace's init (pid 1) when the spawn thread made the
namespace for it (containerizer/pid_namespaces.py), else makes it and forks one: the init mounts ``/proc``,
runs the task as its child and passes SIGTERM on to it, so a kill's grace period holds; where the helper cannot
be built, util-linux ``unshare --pid --fork --kill-child --mount-proc`` does (the task is then pid 1, and
the kernel drops a SIGTERM it has no handler for). Either way, when the container's leader dies the
namespace's init is SIGKILLed, and with it every process in the namespace, even those that double-forked
or left their process group. No Python runs in the child.
"""

from __future__ import annotations

import shutil
from typing import final

from butte.containerizer.isolators.base import Isolator
from butte.core.errors import ValidationError

UNSHARE_FLAGS = ("--pid", "--fork", "--kill-child", "--mount-proc")


@final
class PidNamespace(Isolator):
    """Runs each task in a new pid and mount namespace, with ``/proc`` remounted for it."""

    name = "namespaces/pid"
    makes_pid_namespace = True

    def __init__(self, unshare: str | None = None) -> None:
        found = unshare or shutil.which("unshare")
        if found is None:
            raise ValidationError("isolation", "namespaces/pid needs util-linux unshare on PATH")
        self._prefix = (found, *UNSHARE_FLAGS, "--")

    def wrapper(self) -> tuple[str, ...]:
        """``unshare`` with its flags, before the task's own argv."""
        return self._prefix
