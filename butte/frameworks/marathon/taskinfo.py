"""Mesos ``TaskInfo``s for Marathon apps: task ids, command, Marathon's task environment, checks, container.

Pure. The environment is Marathon's (``EnvironmentHelper`` in 1.x): host ports as ``PORT0..n``,
``PORT_<NAME>``, ``PORT_<declared port>``, ``PORTS`` and ``PORT``; ``HOST``; ``MESOS_TASK_ID``; the
``MARATHON_APP_*`` variables; then the app's own ``env``, which wins on a clash as it does in Marathon.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence

import msgspec

from butte.core.errors import ValidationError
from butte.core.ranges import RangeList
from butte.core.resources import DEFAULT_ROLE, Entry, Resources
from butte.frameworks.marathon.pathid import safe_id
from butte.frameworks.marathon.placement import Claim
from butte.scheduler.tasks import command_info
from butte.wire import checks
from butte.wire.base import ID, NO_RAW, encode
from butte.wire.marathon import App, Container, HealthCheck
from butte.wire.mesos import (
    CommandInfo,
    CommandURI,
    ContainerInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    KillPolicy,
    Label,
    Labels,
    TaskInfo,
)
from butte.wire.resources import resources_to_wire

MESOS_SIDE_PROTOCOLS = frozenset({"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"})
_INSTANCE_MARKERS = (".instance-", ".marathon-")
_LABEL_PREFIX = "MARATHON_APP_LABEL_"
# Marathon leaves out labels that would make an environment variable longer than 512 characters.
_MAX_ENV_LENGTH = 512
_NANOS_PER_SECOND = 1_000_000_000


def new_task_id(app_id: str, rng: random.Random) -> str:
    """A Marathon 1.8 task id: ``<safe_id>.instance-<uuid4>._app.1``, the uuid drawn from ``rng``."""
    instance = uuid.UUID(int=rng.getrandbits(128), version=4)
    return f"{safe_id(app_id)}.instance-{instance}._app.1"


def app_id_prefix(task_id: str) -> str:
    """The safe app id a task id starts with (1.8 ``.instance-``, 1.5 ``.marathon-`` or 1.4 ``<id>.<uuid>``)."""
    for marker in _INSTANCE_MARKERS:
        at = task_id.rfind(marker)
        if at > 0:
            return task_id[:at]
    return task_id.rpartition(".")[0] or task_id


def build_task(app: App, *, task_id: str, agent_id: str, hostname: str, claim: Claim) -> TaskInfo:
    """The TaskInfo that launches one instance of ``app`` with what ``claim`` took from an offer.

    Raises:
        ValidationError: the app has neither a command nor a container, or its Mesos-side health check
            names a port the task does not have or a COMMAND check has no command.
    """
    env = {**task_env(app, task_id=task_id, hostname=hostname, host_ports=claim.host_ports), **app_env(app)}
    grace_s = app.task_kill_grace_period_seconds
    return TaskInfo(
        name=safe_id(app.id),
        task_id=ID(value=task_id),
        agent_id=ID(value=agent_id),
        resources=resources_to_wire(_with_ports(claim)),
        command=_command(app, env),
        container=container_info(app.container),
        health_check=_health_check_raw(app.health_checks, claim.host_ports),
        kill_policy=None if grace_s is None else KillPolicy(grace_period=_duration(grace_s)),
        labels=Labels(labels=[Label(key=k, value=v) for k, v in app.labels.items()]) if app.labels else None,
    )


def app_env(app: App) -> dict[str, str]:
    """The app's plain environment; secret references are left to a secrets plugin we do not have."""
    return {name: value for name, value in app.env.items() if isinstance(value, str)}


def task_env(app: App, *, task_id: str, hostname: str, host_ports: Sequence[int]) -> dict[str, str]:
    """The variables Marathon gives every task of ``app``."""
    env = ports_env(app, host_ports)
    env["HOST"] = hostname
    env["MESOS_TASK_ID"] = task_id
    env["MARATHON_APP_ID"] = app.id
    env["MARATHON_APP_VERSION"] = app.version or ""
    # Marathon writes JVM toString()s: Doubles as "1.0", the Int gpus as "0".
    env["MARATHON_APP_RESOURCE_CPUS"] = str(float(app.cpus))
    env["MARATHON_APP_RESOURCE_MEM"] = str(float(app.mem))
    env["MARATHON_APP_RESOURCE_DISK"] = str(float(app.disk))
    env["MARATHON_APP_RESOURCE_GPUS"] = str(app.gpus)
    if app.container is not None and app.container.docker is not None:
        env["MARATHON_APP_DOCKER_IMAGE"] = app.container.docker.image
    env.update(labels_env(app.labels))
    return env


def ports_env(app: App, host_ports: Sequence[int]) -> dict[str, str]:
    """``PORT0..n``, ``PORT_<declared>``, ``PORT_<NAME>``, then ``PORT`` (the first) and ``PORTS``."""
    env: dict[str, str] = {}
    for index, port in enumerate(host_ports):
        env[f"PORT{index}"] = str(port)
        if index < len(app.port_definitions):
            definition = app.port_definitions[index]
            if definition.port != 0:
                env[f"PORT_{definition.port}"] = str(port)
            if definition.name:
                env[f"PORT_{definition.name.upper()}"] = str(port)
    if host_ports:
        env["PORT"] = str(host_ports[0])
    env["PORTS"] = ",".join(str(port) for port in host_ports)
    return env


def labels_env(labels: Mapping[str, str]) -> dict[str, str]:
    """``MARATHON_APP_LABELS`` (the names, space separated) and ``MARATHON_APP_LABEL_<NAME>=value``."""
    valid = {
        _env_name(key): value
        for key, value in labels.items()
        if len(key) < _MAX_ENV_LENGTH - len(_LABEL_PREFIX) and len(value) < _MAX_ENV_LENGTH
    }
    if not valid:
        return {}
    env = {"MARATHON_APP_LABELS": " ".join(valid)}
    env.update({f"{_LABEL_PREFIX}{name}": value for name, value in valid.items()})
    return env


def _env_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]+", "_", key).upper()


def _command(app: App, env: Mapping[str, str]) -> CommandInfo:
    if app.cmd is not None:
        info = command_info(app.cmd, env=env, user=app.user)
    elif app.args:
        info = command_info(app.args, env=env, user=app.user)
    elif app.container is not None:
        # A container without cmd or args runs its image's entrypoint (shell false, no value).
        variables = [EnvironmentVariable(name=name, value=value) for name, value in env.items()]
        info = CommandInfo(shell=False, environment=Environment(variables=variables), user=app.user)
    else:
        raise ValidationError("cmd", "the app has neither cmd, args nor a container")
    info.uris = [
        CommandURI(
            value=item.uri,
            executable=item.executable,
            extract=item.extract,
            cache=item.cache,
            output_file=item.output_file or item.dest_path,
        )
        for item in app.fetch
    ]
    return info


def _with_ports(claim: Claim) -> Resources:
    # A claim from match_offer already holds its ports; one built by hand may not, so add them unreserved.
    held: RangeList = tuple(claim.resources.ranges("ports"))
    missing = [port for port in claim.host_ports if not _holds(held, port)]
    extra = Resources.from_entries(Entry("ports", DEFAULT_ROLE, ((port, port),)) for port in missing)
    return claim.resources + extra


def _holds(pool: RangeList, port: int) -> bool:
    return any(begin <= port <= end for begin, end in pool)


def container_info(container: Container | None) -> ContainerInfo | None:
    """Docker apps get a DOCKER ContainerInfo (our agent refuses it clearly); a MESOS container only when it
    names an image; None otherwise."""
    if container is None or container.docker is None:
        return None
    docker = container.docker
    if container.type == "MESOS":
        image = {"image": {"type": "DOCKER", "docker": {"name": docker.image}}}
        return ContainerInfo(type="MESOS", mesos=msgspec.Raw(encode(image)))
    info: dict[str, object] = {"image": docker.image}
    if docker.network:
        info["network"] = docker.network
    if docker.privileged:
        info["privileged"] = True
    if docker.force_pull_image:
        info["force_pull_image"] = True
    if docker.parameters:
        info["parameters"] = docker.parameters
    return ContainerInfo(type="DOCKER", docker=msgspec.Raw(encode(info)))


def _health_check_raw(health_checks: Sequence[HealthCheck], host_ports: Sequence[int]) -> msgspec.Raw:
    for index, check in enumerate(health_checks):
        if check.protocol in MESOS_SIDE_PROTOCOLS:
            return msgspec.Raw(encode(mesos_health_check(check, host_ports, field=f"healthChecks[{index}]")))
    return NO_RAW  # the shared default, so that omit_defaults leaves the field out


def mesos_health_check(
    check: HealthCheck, host_ports: Sequence[int], *, field: str = "healthCheck"
) -> checks.HealthCheck:
    """A Mesos-side Marathon health check as the Mesos ``HealthCheck`` the agent runs.

    Raises:
        ValidationError: the check's port index is out of range, or COMMAND has no command.
    """
    found = checks.HealthCheck(
        delay_seconds=float(check.delay_seconds),
        interval_seconds=float(check.interval_seconds),
        timeout_seconds=float(check.timeout_seconds),
        consecutive_failures=check.max_consecutive_failures,
        grace_period_seconds=float(check.grace_period_seconds),
    )
    if check.protocol == "COMMAND":
        if check.command is None:
            raise ValidationError(f"{field}.command", "a COMMAND health check needs a command")
        found.type, found.command = "COMMAND", CommandInfo(shell=True, value=check.command.value)
        return found
    port = check_port(check, host_ports, field=field)
    if check.protocol == "MESOS_TCP":
        found.type, found.tcp = "TCP", checks.TCPCheck(port=port)
        return found
    found.type = "HTTP"
    found.http = checks.HealthCheckHTTP(
        port=port,
        scheme="https" if check.protocol == "MESOS_HTTPS" else "http",
        path=check.path or "/",
        protocol="IPv6" if check.ip_protocol == "IPv6" else None,
    )
    return found


def check_port(check: HealthCheck, host_ports: Sequence[int], *, field: str = "healthCheck") -> int:
    """The port a health check probes: its fixed ``port``, else the host port at ``portIndex`` (default 0).

    Raises:
        ValidationError: ``portIndex`` is beyond the task's host ports.
    """
    if check.port is not None:
        return check.port
    index = check.port_index or 0
    if not 0 <= index < len(host_ports):
        raise ValidationError(f"{field}.portIndex", f"port index {index} but the task has {len(host_ports)} ports")
    return host_ports[index]


def _duration(seconds: float) -> DurationInfo:
    return DurationInfo(nanoseconds=round(seconds * _NANOS_PER_SECOND))
