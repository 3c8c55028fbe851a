"""The agent's side of isolation: containers set up on launch, polled for limitations, released at exit.

The built-in executors call :meth:`Containers.hooks` as a container's first task is built, the spawn thread
runs :meth:`Containers.preparing` before the spawn, and :meth:`Containers.release` kills what is left and
undoes the isolation once the container's executor has ended. While any container lives, one asyncio task
polls every container for a limitation (an OOM kill in its cgroup, or posix memory over its limit) and hands
it to the agent, which kills the task with Mesos's limitation reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from typing import final

from butte.containerizer.isolators.base import ContainerLimits, Limitation, Statistics
from butte.containerizer.isolators.detect import build_isolation, detect_cgroups
from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.isolators.isolation import ContainerHooks, Isolation
from butte.containerizer.launcher import LaunchError, LaunchSpec
from butte.wire.resources import Resource, resources_from_wire

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 1.0
SETPRIV = shutil.which("setpriv") or "setpriv"
OnLimitation = Callable[[str, Limitation], None]


def limits_of(resources: Iterable[Resource]) -> ContainerLimits:
    """The cpus and mem a container's resources give it (absent: no limit)."""
    total = resources_from_wire(list(resources))
    cpus, mem_mb = total.scalar("cpus"), total.scalar("mem")
    return ContainerLimits(cpus=cpus or None, mem_mb=mem_mb or None)


@final
class Containers:
    """Every isolated container of the agent; owned by the agent's event loop."""

    def __init__(
        self, isolation: Isolation, on_limitation: OnLimitation, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    ) -> None:
        self.isolation = isolation
        self._on_limitation = on_limitation
        self._poll_interval_s = poll_interval_s
        self._active: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._emptied = asyncio.Event()

    @classmethod
    def for_agent(
        cls, isolation_flag: str, cgroups_root: str, enable_cfs: bool, on_limitation: OnLimitation
    ) -> Containers:
        """The isolation ``--isolation`` asks for, on what this host has; logs what it runs with.

        Raises:
            ValidationError: an unknown isolator, or one this host cannot run.
        """
        isolation = build_isolation(isolation_flag, cgroups_root, enable_cfs, detect_cgroups())
        if isolation.prelude("-"):  # something to join or a namespace to make: worth the helper
            isolation.helper = build_helper()
        launcher = "butte-isolate" if isolation.helper else "sh/unshare" if isolation.prelude("-") else "direct"
        log.info("Isolation: %s (asked for %s; tasks start %s)", isolation.describe(), isolation_flag, launcher)
        return cls(isolation, on_limitation)

    def launch_spec(self, spec: LaunchSpec, container_id: str) -> LaunchSpec:
        """``spec`` as it runs in the container: under the prelude, which switches user itself when it must.

        A task's own user could not join a root-owned cgroup or make a namespace, so the prelude starts as the
        agent and ends with util-linux ``setpriv`` to the task's user.
        """
        if not self.isolation.prelude(container_id):
            return spec
        user = spec.user
        if user is None or (user.uid == os.geteuid() and user.gid == os.getegid()):
            return dataclasses.replace(spec, prelude=self.isolation.prelude(container_id))
        groups = f"--groups={','.join(map(str, user.groups))}" if user.groups else "--clear-groups"
        switch = (SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", groups, "--")
        return dataclasses.replace(spec, prelude=self.isolation.prelude(container_id, switch), user=None)

    def hooks(self, container_id: str) -> ContainerHooks:
        """What a task's runner tells the container; starts polling for limitations."""
        self._active.add(container_id)
        if self._poller is None or self._poller.done():
            self._emptied = asyncio.Event()
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return ContainerHooks(self.isolation, container_id)

    def preparing(
        self, container_id: str, limits: ContainerLimits, then: Callable[[], object] | None
    ) -> Callable[[], None]:
        """A blocking step for the spawn thread: ``then`` (e.g. make the sandbox), then set the container up.

        The returned callable raises LaunchError when the container cannot be set up.
        """
        return lambda: self._prepare(container_id, limits, then)

    def _prepare(self, container_id: str, limits: ContainerLimits, then: Callable[[], object] | None) -> None:
        if then is not None:
            then()
        try:
            self.isolation.prepare(container_id, limits)
        except OSError as exc:
            raise LaunchError(f"Failed to isolate container {container_id}: {exc}") from exc

    def adopt(self, container_id: str, limits: ContainerLimits) -> None:
        """Take back a container a previous run of the agent set up (recovery); errors are logged."""
        self.isolation.adopt(container_id, limits)

    def release(self, container_id: str) -> None:
        """The container's executor has ended: kill what is left in it and undo its isolation, off the loop."""
        self._active.discard(container_id)
        if not self._active:
            self._emptied.set()
        if not self.isolation.prelude("-"):
            # posix only: forgetting the container touches no cgroup, and a thread hop per task ended costs
            # more (GIL hand-offs) than the work itself.
            self.isolation.destroy(container_id)
            return
        asyncio.get_running_loop().run_in_executor(None, self.isolation.destroy, container_id)

    async def statistics(self, container_ids: Iterable[str]) -> dict[str, Statistics]:
        """Mesos's ``ResourceStatistics`` of each container the isolation knows, read off the loop."""
        known = set(self.isolation.containers())
        wanted = [container_id for container_id in container_ids if container_id in known]
        return await asyncio.to_thread(lambda: {cid: self.isolation.usage(cid) for cid in wanted})

    async def _poll(self) -> None:
        while self._active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), self._poll_interval_s)
            if not self._active:
                return
            for container_id, limitation in await asyncio.to_thread(self.isolation.limitations):
                if container_id in self._active:
                    log.info("Container %s: %s", container_id, limitation.message)
                    self._on_limitation(container_id, limitation)
