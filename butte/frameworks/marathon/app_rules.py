"""The per-app rules (Marathon's ``AppValidation``, ``SchedulingValidation``, ``PathId``): what a definition breaks.

Pure. The rules read an app already normalised by :mod:`butte.frameworks.marathon.validation` (absolute ids,
deprecated keys translated) and yield :data:`Problem` pairs: a JSON path and Marathon's own message for it,
since clients match on those messages. Where a rule comes from is cited beside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from butte.frameworks.marathon.pathid import ROOT, segment_errors
from butte.wire.marathon import App, HealthCheck, UnreachableEnabled

Problem = tuple[str, str]
"""One validation finding: (JSON path, message)."""

_MARATHON_CHECKS = frozenset({"HTTP", "HTTPS", "TCP"})
_MESOS_CHECKS = frozenset({"MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"})
_CMD_ARGS_CONTAINER = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
_RESERVED = ("restart", "tasks", "versions", ".", "..")
_OPERATORS = frozenset({"UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"})
_IS_VALUE = re.compile(r"[a-zA-Z0-9_/.-]*")
_PORT_INDEX = "Health check port indices must address an element of the ports array or container port mappings."


def app_problems(app: App) -> list[Problem]:
    """Every problem Marathon's validators find in a normalised app, as (JSON path, message)."""
    rules = (
        _id_rules,
        _command_rules,
        _number_rules,
        _port_rules,
        _constraint_rules,
        _health_rules,
        _readiness_rules,
        _unreachable_rules,
        _container_rules,
        _dependency_rules,
    )
    return [problem for rule in rules for problem in rule(app)]


def _id_rules(app: App) -> Iterator[Problem]:
    yield from (("/id", error) for error in segment_errors(app.id))
    if app.id == ROOT:
        yield "/id", "must not be root"
    elif app.id.rsplit("/", 1)[-1] in _RESERVED:
        yield "/id", f"must not end with any of the following reserved keywords: {', '.join(_RESERVED)}"


def _command_rules(app: App) -> Iterator[Problem]:
    if app.cmd is not None and not app.cmd:
        yield "/cmd", "must not be an empty string"
    has_cmd, has_args = app.cmd is not None, bool(app.args)
    container = app.container is not None and (app.container.docker is not None or app.container.type == "MESOS")
    if not (has_cmd != has_args or (not (has_cmd and has_args) and container)):
        yield ROOT, _CMD_ARGS_CONTAINER


def _number_rules(app: App) -> Iterator[Problem]:
    # The RAML minimums of app.raml (cpus 0.001, backoffFactor 1, the rest 0) and UpgradeStrategy's 0..1.
    yield from _at_least("/cpus", app.cpus, 0.001)
    for path, value in (("/mem", app.mem), ("/disk", app.disk), ("/gpus", app.gpus), ("/instances", app.instances)):
        yield from _at_least(path, value, 0)
    yield from _at_least("/backoffSeconds", app.backoff_seconds, 0)
    yield from _at_least("/backoffFactor", app.backoff_factor, 1)
    yield from _at_least("/maxLaunchDelaySeconds", app.max_launch_delay_seconds, 0)
    yield from _at_least("/taskKillGracePeriodSeconds", app.task_kill_grace_period_seconds, 0)
    strategy = app.upgrade_strategy
    for name, value in (
        ("minimumHealthCapacity", strategy.minimum_health_capacity),
        ("maximumOverCapacity", strategy.maximum_over_capacity),
    ):
        yield from _between(f"/upgradeStrategy/{name}", value, 0, 1)
    if app.accepted_resource_roles is not None and not app.accepted_resource_roles:
        yield "/acceptedResourceRoles", "must not be empty"
    if app.gpus > 0 and app.container is not None and app.container.type == "DOCKER":
        yield ROOT, "GPU resources only work with the Mesos containerizer"


def _port_rules(app: App) -> Iterator[Problem]:
    for index, definition in enumerate(app.port_definitions):
        yield from _between(f"/portDefinitions({index})/port", definition.port, 0, 65535)
        if definition.protocol not in ("tcp", "udp", "udp,tcp"):
            yield f"/portDefinitions({index})/protocol", "is not one of (tcp,udp,udp,tcp)"
    yield from _unique("/portDefinitions", [d.name for d in app.port_definitions], "Port names must be unique.")
    # Port 0 asks for a service port from the pool, so only fixed ports must differ (portDefinitionsValidator).
    yield from _unique("/portDefinitions", [d.port or None for d in app.port_definitions], "Ports must be unique.")
    if app.port_definitions and not host_networking(app):
        yield ROOT, "portDefinitions are only allowed with host-networking"


def _constraint_rules(app: App) -> Iterator[Problem]:
    for index, constraint in enumerate(app.constraints):
        error = constraint_error(constraint)
        if error is not None:
            yield f"/constraints({index})", error


def constraint_error(constraint: Sequence[str]) -> str | None:
    """Marathon's message for an invalid ``[field, OPERATOR(, value)]`` constraint, else None."""
    if len(constraint) not in (2, 3):
        return "Each constraint must have either 2 or 3 fields"
    field, operator = constraint[0], constraint[1].upper()
    value = constraint[2] if len(constraint) == 3 else None
    if not field:
        return "missing field for constraint declaration"
    if operator not in _OPERATORS:
        return "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"
    return _operator_value_error(operator, value)


def _operator_value_error(operator: str, value: str | None) -> str | None:
    if operator == "UNIQUE" and value is not None:
        return "UNIQUE does not accept a value"
    if operator == "GROUP_BY" and value is not None and not _is_int(value):
        return "GROUP BY must define an integer value or else no value at all"
    if operator == "MAX_PER" and (value is None or not _is_int(value)):
        return "MAX_PER requires an integer value"
    if operator in ("LIKE", "UNLIKE"):
        if not value:
            return "LIKE and UNLIKE require a non-empty, regular expression value"
        try:
            re.compile(value)
        except re.error:
            return "is not a valid regular expression"
    if operator == "IS" and not _IS_VALUE.fullmatch(value or ""):
        return "IS only supports Mesos text and float values (see http://mesos.apache.org/documentation/latest/attributes-resources/)"
    return None


def _health_rules(app: App) -> Iterator[Problem]:
    port_count = _port_count(app)
    for index, check in enumerate(app.health_checks):
        yield from _health_check_rules(check, f"/healthChecks({index})", port_count, app)
    protocols = [check.protocol for check in app.health_checks]
    if sum(protocol in _MESOS_CHECKS for protocol in protocols) > 1:
        yield ROOT, "AppDefinition can contain at most one Mesos health check"
    if _MARATHON_CHECKS.intersection(protocols) and {"COMMAND", *_MESOS_CHECKS}.intersection(protocols):
        yield ROOT, "AppDefinition must not mix Marathon health checks (HTTP, HTTPS, TCP) with Mesos ones"


def _health_check_rules(check: HealthCheck, where: str, port_count: int, app: App) -> Iterator[Problem]:
    if check.port is not None and check.port_index is not None:
        yield where, "HealthCheck must specify either a port or a portIndex"
    if check.protocol == "COMMAND" and (check.command is None or not check.command.value):
        yield f"{where}/command", "must be defined for COMMAND health checks"
    index = check.port_index
    if check.protocol in _MARATHON_CHECKS and index is not None and check.port is None and not 0 <= index < port_count:
        yield f"{where}/portIndex", _PORT_INDEX
    if check.port is not None:
        yield from _between(f"{where}/port", check.port, 0, 65535)
    for name, value in (
        ("gracePeriodSeconds", check.grace_period_seconds),
        ("intervalSeconds", check.interval_seconds),
        ("timeoutSeconds", check.timeout_seconds),
        ("maxConsecutiveFailures", check.max_consecutive_failures),
        ("delaySeconds", check.delay_seconds),
    ):
        yield from _at_least(f"{where}/{name}", value, 0)
    docker = app.container is not None and app.container.type == "DOCKER"
    if check.ip_protocol == "IPv6" and not (check.protocol in _MESOS_CHECKS and docker):
        yield where, "IPv6 can only be used for container type DOCKER and Mesos http/https/tcp health checks"


def _readiness_rules(app: App) -> Iterator[Problem]:
    if len(app.readiness_checks) > 1:
        yield "/readinessChecks", f"has size {len(app.readiness_checks)}, expected 1 or less"
    names = {name for name in _port_names(app) if name is not None}
    for index, check in enumerate(app.readiness_checks):
        if check.port_name not in names:
            yield f"/readinessChecks({index})/portName", f"No port definition reference for portName {check.port_name}"
        if check.timeout_seconds >= check.interval_seconds:
            yield f"/readinessChecks({index})/timeoutSeconds", f"must be less than {check.interval_seconds}"


def _unreachable_rules(app: App) -> Iterator[Problem]:
    strategy = app.unreachable_strategy
    if not isinstance(strategy, UnreachableEnabled):
        return
    inactive, expunge = strategy.inactive_after_seconds, strategy.expunge_after_seconds
    where = "/unreachableStrategy/inactiveAfterSeconds"
    if inactive < 0:
        yield where, f"inactiveAfterSeconds ({inactive}) must be greater than or equal to 0"
    elif inactive > expunge:
        yield (
            where,
            f"inactiveAfterSeconds ({inactive}) must be less or equal to expungeAfterSeconds, which is {expunge}",
        )
    if expunge < 0:
        yield "/unreachableStrategy/expungeAfterSeconds", "is less than 0"


def _container_rules(app: App) -> Iterator[Problem]:
    container = app.container
    if container is None:
        return
    if container.type == "DOCKER" and container.docker is None:
        yield "/container/docker", "must be defined"
    if container.docker is not None and not container.docker.image:
        yield "/container/docker/image", "must not be empty"
    for where, mappings in (
        ("/container/portMappings", container.port_mappings),
        ("/container/docker/portMappings", container.docker.port_mappings if container.docker else []),
    ):
        yield from _unique(where, [mapping.name for mapping in mappings], "Port names must be unique.")
        for index, mapping in enumerate(mappings):
            for name, port in (("containerPort", mapping.container_port), ("hostPort", mapping.host_port)):
                yield from _between(f"{where}({index})/{name}", port, 0, 65535)


def _dependency_rules(app: App) -> Iterator[Problem]:
    for index, dependency in enumerate(app.dependencies):
        yield from ((f"/dependencies({index})", error) for error in segment_errors(dependency))
        if dependency == ROOT:
            yield f"/dependencies({index})", "must not be root"


def _port_count(app: App) -> int:
    """How many ports a portIndex may address: container mappings if any, else port definitions."""
    return len(_port_names(app))


def _port_names(app: App) -> list[str | None]:
    container = app.container
    if container is not None and container.port_mappings:
        return [mapping.name for mapping in container.port_mappings]
    if container is not None and container.docker is not None and container.docker.port_mappings:
        return [mapping.name for mapping in container.docker.port_mappings]
    return [definition.name for definition in app.port_definitions]


def _at_least(where: str, value: float | None, minimum: float) -> Iterator[Problem]:
    if value is not None and value < minimum:
        yield where, f"is less than {minimum:g}"


def _between(where: str, value: float, minimum: float, maximum: float) -> Iterator[Problem]:
    yield from _at_least(where, value, minimum)
    if value > maximum:
        yield where, f"is greater than {maximum:g}"


def _unique(where: str, values: Sequence[object], message: str) -> Iterator[Problem]:
    present = [value for value in values if value is not None]
    if len(present) != len(set(present)):
        yield where, message


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def host_networking(app: App) -> bool:
    """Whether the app runs on the host's network: no non-host network, and Docker (if any) in HOST mode."""
    if any(network.mode != "host" for network in app.networks):
        return False
    docker = app.container.docker if app.container else None
    return docker is None or docker.network in (None, "HOST")
