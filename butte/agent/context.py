"""What the agent's executor runners share: settings, records, the launcher, the reporter, the master."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import final

from butte.agent.config import AgentConfig
from butte.agent.state import AgentState, ExecutorState, FrameworkState
from butte.agent.updates import TaskReporter
from butte.containerizer.environment import ExecutorContext
from butte.containerizer.fetcher import Fetcher
from butte.containerizer.fetcher_cache import FetcherCache
from butte.containerizer.isolators.containers import Containers
from butte.containerizer.launcher import Launcher, UserIds, lookup_user
from butte.containerizer.sandbox import executor_runs_dir
from butte.wire.agent_link import AgentCall
from butte.wire.mesos import AgentInfo


@final
@dataclass(slots=True)
class AgentContext:
    """Shared by the built-in and custom executor runners; owned by the agent service."""

    config: AgentConfig
    state: AgentState
    launcher: Launcher
    reporter: TaskReporter
    agent_info: AgentInfo
    send: Callable[[AgentCall], None]  # fire and forget: calls the master may lose are not retried
    executor_ended: Callable[[ExecutorState], None]
    # Tasks inherit the agent's environment; a snapshot spares decoding os.environ for every launch.
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    rng: random.Random = field(default_factory=lambda: random.Random(os.urandom(32)))
    _users: dict[str, UserIds] = field(default_factory=dict)
    # One fetcher (and cache) for command tasks, task groups and custom executors alike.
    fetcher: Fetcher = field(init=False)
    # One isolation for them all too: each container in its cgroups and namespaces, watched for limitations.
    containers: Containers = field(init=False)

    def __post_init__(self) -> None:
        cache_dir = self.config.fetcher_cache_dir or os.path.join(self.config.work_dir, "fetch")
        self.fetcher = Fetcher(FetcherCache(cache_dir, self.config.fetcher_cache_size_bytes))
        config = self.config
        self.containers = Containers.for_agent(config.isolation, config.cgroups_root, config.cgroups_enable_cfs)
        if self.containers.isolation.helper is not None:  # one spawning process starts every helper run
            self.launcher.spawn_through(self.containers.isolation.helper)

    @property
    def agent_id(self) -> str:
        """The id the master gave this agent."""
        return self.agent_info.id.value if self.agent_info.id else ""

    def resolve_user(self, command_user: str | None, framework: FrameworkState) -> UserIds | None:
        """Whom to run as: the command's user, else the framework's, when root and ``--switch_user``.

        Raises:
            NotFound: that user does not exist on this host.
        """
        if not self.config.switch_user or os.geteuid() != 0:
            return None
        name = command_user or framework.info.user
        user = self._users.get(name)
        if user is None:  # only hits are kept: a user added later is found on its first launch
            user = self._users[name] = lookup_user(name)
        return user

    def plan_container(self, framework_id: str, executor_id: str) -> tuple[str, str, str]:
        """A new container id, its executor's runs directory and its sandbox path (nothing is created)."""
        container_id = str(uuid.UUID(bytes=self.rng.randbytes(16), version=4))
        runs_dir = executor_runs_dir(self.config.work_dir, self.agent_id, framework_id, executor_id)
        return container_id, runs_dir, os.path.join(runs_dir, container_id)

    def executor_context(self, framework: FrameworkState, executor_id: str, directory: str) -> ExecutorContext:
        """The facts an executor's MESOS_* environment is made of."""
        return ExecutorContext(
            framework_id=framework.framework_id,
            executor_id=executor_id,
            agent_id=self.agent_id,
            agent_ip=self.config.ip,
            agent_port=self.agent_info.port,
            directory=directory,
            checkpoint=framework.info.checkpoint,
            shutdown_grace_s=self.config.executor_shutdown_grace_period_s,
            recovery_timeout_s=self.config.recovery_timeout_s,
            subscription_backoff_max_s=self.config.executor_reregistration_timeout_s,
        )
