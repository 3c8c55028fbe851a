"""The agent's side of isolation: containers set up on launch, watched for limitations, released at exit.

Both kinds of executor runner (the built-in one for command tasks and task groups, and custom executors) go
through here: :meth:`Containers.hooks` as a container's executor is built (with whom to tell of a limitation),
:meth:`Containers.preparing` on the spawn thread before the spawn, :meth:`Containers.update` when an executor's
resources change, and :meth:`Containers.release` once the executor has ended, which kills what is left and
undoes the isolation.

A memory limitation is seen the moment the kernel signals it (an eventfd on cgroup v1, inotify on v2's
``memory.events``: :mod:`oom_events`); the event is confirmed against the cgroup's OOM kill count before the
agent acts. A command task that butte-isolate sets up is watched by the helper instead, which ends the
container on an OOM kill; its runner reads the limitation when the task's exit comes. While any container
lives, one asyncio task also polls every other container every second: the fallback
where no event source could be set up, and the only way posix isolation sees memory over its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import final

from butte.containerizer.isolators.base import ContainerLimits, Limitation, Statistics
from butte.containerizer.isolators.detect import build_isolation, detect_cgroups
from butte.containerizer.isolators.helper import build_helper
from butte.containerizer.isolators.isolation import ContainerHooks, Isolation
from butte.containerizer.isolators.oom_events import EventSource
from butte.containerizer.launcher import LaunchError, LaunchSpec
from butte.wire.resources import Resource, resources_from_wire

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 1.0
# A v1 OOM event comes as the cgroup hits OOM, a moment before the kill is counted: look again this often,
# this many times, before leaving it to the poll (~100 ms in all).
OOM_CONFIRM_PAUSE_S = 0.005
OOM_CONFIRM_TRIES = 20
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

    def __init__(self, isolation: Isolation, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.isolation = isolation
        self._poll_interval_s = poll_interval_s
        self._handlers: dict[str, OnLimitation] = {}  # the live containers, and whom to tell of a limitation
        self._sources: dict[str, list[EventSource]] = {}
        self._readers: dict[int, EventSource] = {}  # descriptors the event loop reads
        self._confirming: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._emptied = asyncio.Event()
        self._updater: ThreadPoolExecutor | None = None  # one thread: updates apply in the order they were made
        # Containers are destroyed here, off the loop; nobody waits for it, so no future comes back to the loop.
        self._destroyer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="destroy")
        # Containers butte-isolate sets up and takes down itself: their spec (still to get the helper's part of
        # the prelude) and the user switch that ends the prelude.
        self._by_helper: dict[str, tuple[LaunchSpec, tuple[str, ...]]] = {}

    @classmethod
    def for_agent(cls, isolation_flag: str, cgroups_root: str, enable_cfs: bool) -> Containers:
        """The isolation ``--isolation`` asks for, on what this host has; logs what it runs with.

        Raises:
            ValidationError: an unknown isolator, or one this host cannot run.
        """
        isolation = build_isolation(isolation_flag, cgroups_root, enable_cfs, detect_cgroups())
        # Joins and namespaces use it, and so does every checkpointed task: it records the exit status at a
        # third of the cost of the `sh -c` wrapper (built once per host and version, then cached).
        isolation.helper = build_helper()
        launcher = "butte-isolate" if isolation.helper else "sh/unshare" if isolation.has_prelude else "direct"
        log.info("Isolation: %s (asked for %s; tasks start %s)", isolation.describe(), isolation_flag, launcher)
        return cls(isolation)

    def launch_spec(self, spec: LaunchSpec, container_id: str, sole: bool = False) -> LaunchSpec:
        """``spec`` as it runs in the container: under the prelude, which switches user itself when it must.

        A task's own user could not join a root-owned cgroup or make a namespace, so the prelude starts as the
        agent and ends with util-linux ``setpriv`` to the task's user.
        ``sole``: ``spec`` is the container's only process (a command task): butte-isolate then sets the
        container up and takes it down itself where it can (:meth:`Isolation.helper_prelude`), and
        :meth:`preparing`'s step returns the spec to start.
        """
        helper = self.isolation.helper if spec.exit_status_path is not None else None
        if not self.isolation.has_prelude:
            return spec if helper is None else dataclasses.replace(spec, status_helper=helper)
        user = spec.user
        switch: tuple[str, ...] = ()
        if user is not None and (user.uid != os.geteuid() or user.gid != os.getegid()):
            groups = f"--groups={','.join(map(str, user.groups))}" if user.groups else "--clear-groups"
            switch = (SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", groups, "--")
            user = None  # setpriv switches, at the end of the prelude
        prelude = self.isolation.prelude(container_id, switch)
        isolated = dataclasses.replace(spec, prelude=prelude, user=user, status_helper=helper)
        if sole and self.isolation.helper_can_set_up():
            # The helper's part is decided as the spawn thread gets to it (_prepare_by_helper): only then is
            # a recycled cgroup likely to be idle. Should that step not run, this prelude joins cgroups nobody
            # made, and the task fails rather than run unisolated.
            self._by_helper[container_id] = (isolated, switch)
        return isolated

    def hooks(self, container_id: str, on_limitation: OnLimitation) -> ContainerHooks:
        """What a runner tells the container; ``on_limitation`` hears of a limit it passes (from now on)."""
        self._handlers[container_id] = on_limitation
        if self._poller is None or self._poller.done():
            self._emptied = asyncio.Event()
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return ContainerHooks(self.isolation, container_id)

    def preparing(
        self, container_id: str, limits: ContainerLimits, then: Callable[[], object] | None
    ) -> Callable[[], LaunchSpec | None]:
        """A blocking step for the spawn thread: ``then`` (e.g. make the sandbox), then set the container up.

        Call it on the event loop. The returned callable raises LaunchError when the container cannot be set up;
        it returns the spec to start in place of the one :meth:`launch_spec` gave, when the helper sets the
        container up (the launcher starts what it returns).
        """
        loop = asyncio.get_running_loop()
        return lambda: self._prepare(container_id, limits, then, loop)

    def _prepare(
        self,
        container_id: str,
        limits: ContainerLimits,
        then: Callable[[], object] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> LaunchSpec | None:
        if then is not None:
            then()
        if container_id in self._by_helper:
            return self._prepare_by_helper(container_id, limits)
        try:
            first = self.isolation.prepare(container_id, limits)
        except OSError as exc:
            raise LaunchError(f"Failed to isolate container {container_id}: {exc}") from exc
        if first:
            self._watch(container_id, self.isolation.oom_events(container_id), loop)
        return None

    def _watch(self, container_id: str, sources: list[EventSource], loop: asyncio.AbstractEventLoop) -> None:
        """Have the loop read the container's event sources (from a spawn thread)."""
        if sources and all(source.fileno() in self._readers for source in sources):
            # Shared sources (one epoll set or inotify instance for all) are read already: note the container
            # without waking the loop (dict steps are atomic; the loop only pops).
            self._sources[container_id] = sources
            if container_id not in self._handlers:  # released meanwhile (its launch was given up)
                for source in self._sources.pop(container_id, []):
                    source.unwatch(container_id)
        elif sources:
            loop.call_soon_threadsafe(self._arm, container_id, sources)

    def _prepare_by_helper(self, container_id: str, limits: ContainerLimits) -> LaunchSpec:
        """The spawn thread's step for a container butte-isolate sets up: the spec with the helper's prelude."""
        spec, switch = self._by_helper[container_id]
        launch = self.isolation.helper_prelude(container_id, limits, switch)
        if launch is None:
            raise LaunchError(f"Failed to isolate container {container_id}: the helper cannot set it up")
        self.isolation.expect(container_id, limits)
        return dataclasses.replace(spec, prelude=launch.prelude, new_pid_namespace=launch.pid_namespace)

    def adopt(self, container_id: str, limits: ContainerLimits, on_limitation: OnLimitation) -> ContainerHooks:
        """Take back a container a previous run of the agent set up (recovery); errors are logged."""
        hooks = self.hooks(container_id, on_limitation)
        if container_id not in self.isolation.containers():
            self.isolation.adopt(container_id, limits)
            self._arm(container_id, self.isolation.oom_events(container_id))
        return hooks

    def update(self, container_id: str, limits: ContainerLimits) -> asyncio.Future[None]:
        """The container's resources changed (a task joined its executor): apply the limits off the loop.

        Returns when they are applied (nobody need wait: failures are logged).
        """
        if self._updater is None:
            self._updater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="containers")
        return asyncio.get_running_loop().run_in_executor(self._updater, self._apply_update, container_id, limits)

    def _apply_update(self, container_id: str, limits: ContainerLimits) -> None:
        try:
            self.isolation.update(container_id, limits)
        except OSError:
            log.exception("Failed to update container %s to %s", container_id, limits)

    def release(self, container_id: str) -> None:
        """The container's executor has ended: kill what is left in it and undo its isolation, off the loop."""
        self._handlers.pop(container_id, None)
        self._disarm(container_id)
        if not self._handlers:
            self._emptied.set()
        if self._by_helper.pop(container_id, None) is not None and self.isolation.forget_if_removed(container_id):
            return
        if not self.isolation.has_prelude:
            # posix only: forgetting the container touches no cgroup, and a thread hop per task ended costs
            # more (GIL hand-offs) than the work itself.
            self.isolation.destroy(container_id)
            return
        try:
            self._destroyer.submit(self._destroy, container_id)
        except RuntimeError:  # closed: a task that ended as the agent stopped is destroyed right here
            self._destroy(container_id)

    def close(self) -> None:
        """The agent is stopping and its containers are released: finish their destroys, drop what is kept for
        containers to come (blocking)."""
        self._destroyer.shutdown(wait=True)
        self.isolation.close()

    def _destroy(self, container_id: str) -> None:
        try:
            self.isolation.destroy(container_id)
        except Exception:  # nobody waits for this future: say what went wrong here
            log.exception("Failed to destroy container %s", container_id)

    async def statistics(self, container_ids: Iterable[str]) -> dict[str, Statistics]:
        """Mesos's ``ResourceStatistics`` of each container the isolation knows, read off the loop."""
        known = set(self.isolation.containers())
        wanted = [container_id for container_id in container_ids if container_id in known]
        return await asyncio.to_thread(lambda: {cid: self.isolation.usage(cid) for cid in wanted})

    def watched(self) -> list[str]:
        """The containers whose OOM events the loop is reading."""
        return [container_id for container_id, sources in self._sources.items() if sources]

    # ---- OOM events ----

    def _arm(self, container_id: str, sources: list[EventSource]) -> None:
        """Read the container's event sources on the loop (unless it was released meanwhile)."""
        self._sources.setdefault(container_id, []).extend(sources)
        if container_id not in self._handlers:
            self._disarm(container_id)
            return
        loop = asyncio.get_running_loop()
        for source in sources:
            if source.fileno() not in self._readers:
                self._readers[source.fileno()] = source
                loop.add_reader(source.fileno(), self._readable, source)

    def _disarm(self, container_id: str) -> None:
        for source in self._sources.pop(container_id, []):
            if source.unwatch(container_id):
                if self._readers.pop(source.fileno(), None) is not None:
                    asyncio.get_running_loop().remove_reader(source.fileno())
                source.close()

    def _readable(self, source: EventSource) -> None:
        for container_id in source.fired():
            if container_id in self._handlers and container_id not in self._confirming:
                task = asyncio.get_running_loop().create_task(self._confirm(container_id))
                self._confirming[container_id] = task

    async def _confirm(self, container_id: str) -> None:
        """An event came: tell the container's runner once the cgroup shows the limitation."""
        try:
            for attempt in range(OOM_CONFIRM_TRIES):
                if attempt:
                    await asyncio.sleep(OOM_CONFIRM_PAUSE_S)
                if container_id not in self._handlers:
                    return  # released meanwhile
                limitation = await asyncio.to_thread(self.isolation.limitation, container_id)
                if limitation is not None:
                    self._limited(container_id, limitation)
                    return
        finally:
            self._confirming.pop(container_id, None)

    def _limited(self, container_id: str, limitation: Limitation) -> None:
        handler = self._handlers.get(container_id)
        if handler is not None:
            log.info("Container %s: %s", container_id, limitation.message)
            handler(container_id, limitation)

    async def _poll(self) -> None:
        while self._handlers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), self._poll_interval_s)
            if not self._handlers:
                return
            for container_id, limitation in await asyncio.to_thread(self.isolation.limitations):
                self._limited(container_id, limitation)
