"""The environment of an executor or command task: the agent's own, the ``MESOS_*`` variables, the task's.

Mesos's ``executorEnvironment()`` (reference/mesos-v1-api.md §3.2), then ``CommandInfo.environment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from butte.core.durations import format_duration
from butte.wire.mesos import Environment


@final
@dataclass(frozen=True, slots=True)
class ExecutorContext:
    """Who an executor is and where it runs: the facts its environment is made of."""

    framework_id: str
    executor_id: str
    agent_id: str
    agent_ip: str
    agent_port: int
    directory: str
    checkpoint: bool
    shutdown_grace_s: float
    recovery_timeout_s: float = 900.0
    subscription_backoff_max_s: float = 2.0


def executor_environment(
    base: Mapping[str, str], context: ExecutorContext, command_env: Environment | None
) -> dict[str, str]:
    """``base`` plus the MESOS_* variables of the executor, then the command's own VALUE variables."""
    env = dict(base)
    endpoint = f"{context.agent_ip}:{context.agent_port}"
    env.update(
        {
            "MESOS_FRAMEWORK_ID": context.framework_id,
            "MESOS_EXECUTOR_ID": context.executor_id,
            "MESOS_SLAVE_ID": context.agent_id,
            "MESOS_AGENT_ENDPOINT": endpoint,
            "MESOS_SLAVE_PID": f"slave(1)@{endpoint}",
            "MESOS_DIRECTORY": context.directory,
            "MESOS_SANDBOX": context.directory,
            "MESOS_CHECKPOINT": "1" if context.checkpoint else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": format_duration(context.shutdown_grace_s),
            "LIBPROCESS_IP": context.agent_ip,
            "LIBPROCESS_PORT": "0",
        }
    )
    if context.checkpoint:
        env["MESOS_RECOVERY_TIMEOUT"] = format_duration(context.recovery_timeout_s)
        env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = format_duration(context.subscription_backoff_max_s)
    env.update(command_variables(command_env))
    return env


def command_variables(command_env: Environment | None) -> dict[str, str]:
    """The VALUE variables of ``CommandInfo.environment`` (secrets are not supported and are left out)."""
    if command_env is None:
        return {}
    return {variable.name: variable.value or "" for variable in command_env.variables if variable.type == "VALUE"}
