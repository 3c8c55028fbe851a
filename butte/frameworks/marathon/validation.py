"""App definitions in, validated and normalised: what ``POST/PUT/PATCH /v2/apps`` and ``/v2/groups`` accept.

Pure. A body is decoded into :class:`butte.wire.marathon.App`; a value of the wrong JSON type is
:class:`InvalidJson` (400, ``error.expected.jsnumber`` style, as Marathon's play-json readers answer), a value
Marathon's validators refuse is :class:`InvalidDefinition` (422 ``Object is not valid``). Both carry
``details``: one :class:`Detail` per JSON path (``/healthChecks(0)/portIndex``), with Marathon's messages.
Normalisation follows Marathon's ``AppNormalization`` (deprecated ``ports``/``uris`` translated, relative ids
made absolute); the rules follow ``AppValidation``/``SchedulingValidation`` (cited beside each).

ValidationError
├── InvalidJson          -> 400 {"message": "Invalid JSON", "details": [...]}
└── InvalidDefinition    -> 422 {"message": "Object is not valid", "details": [...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar, final
from urllib.parse import urlsplit

import msgspec

from butte.core.errors import ValidationError
from butte.frameworks.marathon.pathid import ROOT, canonical, parent, segment_errors
from butte.wire.marathon import App, FetchUri, HealthCheck, PortDefinition, UnreachableEnabled

Problem = tuple[str, str]
"""One validation finding: (JSON path, message)."""

T = TypeVar("T")

# Keys of an AppInfo that a client may echo back in a PUT (the ``marathon`` client's update_app sends a GET
# result); Marathon's readers ignore them, and ``id`` comes from the URL.
READ_ONLY_KEYS = frozenset(
    {
        "id",
        "version",
        "versionInfo",
        "tasks",
        "deployments",
        "tasksRunning",
        "tasksStaged",
        "tasksHealthy",
        "tasksUnhealthy",
        "lastTaskFailure",
        "taskStats",
        "tasksStats",
        "readinessCheckResults",
    }
)


@final
@dataclass(frozen=True, slots=True)
class Detail:
    """The errors found at one JSON path of a request body."""

    path: str
    errors: tuple[str, ...]


class DetailedError(ValidationError):
    """A validation error that answers Marathon's ``{"message", "details"}`` body."""

    message: ClassVar[str] = "Object is not valid"

    def __init__(self, details: Iterable[Detail]) -> None:
        self.details = tuple(details)
        first = self.details[0] if self.details else Detail(ROOT, (self.message,))
        super().__init__(first.path, "; ".join(first.errors))

    def response_body(self) -> dict[str, Any]:
        """The JSON body Marathon answers with."""
        return {
            "message": self.message,
            "details": [{"path": d.path, "errors": list(d.errors)} for d in self.details],
        }

    def prefixed(self, prefix: str) -> Self:
        """The same error with every path moved below ``prefix`` (an app inside a group body)."""
        return type(self)(Detail(_join(prefix, d.path), d.errors) for d in self.details)


@final
class InvalidDefinition(DetailedError):
    """A well-typed definition Marathon refuses (422)."""


@final
class InvalidJson(DetailedError):
    """Malformed JSON, or a value of the wrong JSON type (400)."""

    message: ClassVar[str] = "Invalid JSON"


@final
@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """A ``/v2/groups`` body with every id absolute; None means "not given, leave as it is"."""

    id: str
    apps: tuple[App, ...] | None = None
    groups: tuple[GroupUpdate, ...] | None = None
    dependencies: tuple[str, ...] | None = None
    scale_by: float | None = None
    version: str | None = None


class _GroupBody(msgspec.Struct, rename="camel", kw_only=True):
    id: str | None = None
    apps: list[dict[str, Any]] | None = None
    groups: list[dict[str, Any]] | None = None
    dependencies: list[str] | None = None
    scale_by: float | None = None
    version: str | None = None


def details_of(problems: Iterable[Problem]) -> tuple[Detail, ...]:
    """Problems grouped by path, in the order first seen, each message once."""
    grouped: dict[str, list[str]] = {}
    for path, error in problems:
        errors = grouped.setdefault(path, [])
        if error not in errors:
            errors.append(error)
    return tuple(Detail(path, tuple(errors)) for path, errors in grouped.items())


def parse_app(body: bytes | Mapping[str, Any], *, base: str = ROOT) -> App:
    """Decode, normalise and validate an app definition; a relative id is read against the group ``base``.

    ``version`` and ``versionInfo`` are the server's to set and are dropped.

    Raises:
        InvalidJson: malformed JSON, not an object, or a value of the wrong type.
        InvalidDefinition: anything Marathon's validators refuse (every problem at once).
    """
    raw = decode_object(body)
    app = convert(raw, App)
    problems: list[Problem] = []
    app = normalised(app, given=frozenset(raw), base=base, problems=problems)
    problems.extend(app_problems(app))
    if problems:
        raise InvalidDefinition(details_of(problems))
    return app


def merge_partial(current: App, body: Mapping[str, Any]) -> App:
    """A partial update (PUT with ``partialUpdate``, PATCH): the given top-level keys replace ``current``'s.

    Read-only keys (:data:`READ_ONLY_KEYS`) and nulls are ignored; the id stays ``current.id``.

    Raises:
        InvalidJson: the body is not an object, or a value has the wrong type.
        InvalidDefinition: the merged definition is not valid.
    """
    if not isinstance(body, Mapping):
        raise InvalidJson([Detail(ROOT, ("error.expected.jsobject",))])
    given = {key: value for key, value in body.items() if key not in READ_ONLY_KEYS and value is not None}
    merged = {key: value for key, value in msgspec.to_builtins(current).items() if value is not None}
    # A deprecated key in the update replaces the canonical one it translates to (AppNormalization.forDeprecated).
    if "ports" in given and "portDefinitions" not in given:
        merged.pop("portDefinitions", None)
    if "uris" in given and "fetch" not in given:
        merged.pop("fetch", None)
    if "networks" in given and not {"ports", "portDefinitions"} & given.keys():
        merged.pop("portDefinitions", None)
    merged.update(given)
    merged["id"] = current.id
    return parse_app(merged, base=parent(current.id))


def is_rollback(body: Mapping[str, Any]) -> str | None:
    """The version a PUT body rolls back to: set when it holds only ``version`` (and perhaps ``id``)."""
    if not isinstance(body, Mapping):
        return None
    version = body.get("version")
    keys = {key for key, value in body.items() if value is not None}
    if isinstance(version, str) and keys <= {"id", "version"}:
        return version
    return None


def parse_group_update(body: bytes | Mapping[str, Any], *, group_id: str) -> GroupUpdate:
    """Decode a group body; its ``id`` (if any) is read against ``group_id``, nested ids against their group.

    Raises:
        InvalidJson: malformed JSON or a value of the wrong type (paths like ``/apps(0)/cpus``).
        InvalidDefinition: an invalid app, id or dependency, or an app or group outside its enclosing group.
    """
    shape = convert(decode_object(body), _GroupBody)
    problems: list[Problem] = []
    gid = group_id if shape.id is None else _resolve(shape.id, group_id, "/id", problems)
    update = _group_update(shape, gid, "", problems)
    if problems:
        raise InvalidDefinition(details_of(problems))
    return update


def _group_update(shape: _GroupBody, gid: str, prefix: str, problems: list[Problem]) -> GroupUpdate:
    apps = None if shape.apps is None else _nested_apps(shape.apps, gid, prefix, problems)
    groups = None if shape.groups is None else _nested_groups(shape.groups, gid, prefix, problems)
    dependencies = None
    if shape.dependencies is not None:
        dependencies = tuple(
            _resolve(dep, parent(gid), f"{prefix}/dependencies({index})", problems)
            for index, dep in enumerate(shape.dependencies)
        )
    if apps is not None and groups is not None and {a.id for a in apps} & {g.id for g in groups}:
        problems.append((prefix or ROOT, "Groups and Applications may not have the same identifier."))
    return GroupUpdate(gid, apps, groups, dependencies, shape.scale_by, shape.version)


def _nested_apps(raws: Sequence[Mapping[str, Any]], gid: str, prefix: str, problems: list[Problem]) -> tuple[App, ...]:
    apps: list[App] = []
    for index, raw in enumerate(raws):
        where = f"{prefix}/apps({index})"
        try:
            app = parse_app(raw, base=gid)
        except InvalidJson as exc:
            raise exc.prefixed(where) from exc
        except InvalidDefinition as exc:
            problems.extend((_join(where, d.path), error) for d in exc.details for error in d.errors)
            continue
        _require_child(app.id, gid, f"{where}/id", problems)
        apps.append(app)
    return tuple(apps)


def _nested_groups(
    raws: Sequence[Mapping[str, Any]], gid: str, prefix: str, problems: list[Problem]
) -> tuple[GroupUpdate, ...]:
    groups: list[GroupUpdate] = []
    for index, raw in enumerate(raws):
        where = f"{prefix}/groups({index})"
        try:
            shape = convert(raw, _GroupBody)
        except InvalidJson as exc:
            raise exc.prefixed(where) from exc
        if shape.id is None:
            raise InvalidJson([Detail(f"{where}/id", ("error.path.missing",))])
        child = _resolve(shape.id, gid, f"{where}/id", problems)
        _require_child(child, gid, f"{where}/id", problems)
        groups.append(_group_update(shape, child, where, problems))
    return tuple(groups)


def _resolve(path: str, base: str, where: str, problems: list[Problem]) -> str:
    """``path`` made absolute against ``base``; problems with it are recorded at ``where``."""
    problems.extend((where, error) for error in segment_errors(path))
    try:
        return canonical(path, base)
    except ValidationError as exc:
        problems.append((where, exc.msg))
        return path


def _require_child(child: str, gid: str, where: str, problems: list[Problem]) -> None:
    # Marathon's groups.raml example message: an id inside a group body must be a direct child of it.
    if child == ROOT or parent(child) != gid:
        problems.append((where, f"identifier {child} is not child of {gid}. Hint: use relative paths."))


def decode_object(body: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of a body, without its null members (Marathon reads ``null`` as "not given").

    Raises:
        InvalidJson: malformed JSON, or not an object.
    """
    raw: object = body
    if isinstance(body, bytes | bytearray):
        try:
            raw = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidJson([Detail(ROOT, (str(exc),))]) from exc
    if not isinstance(raw, Mapping):
        raise InvalidJson([Detail(ROOT, ("error.expected.jsobject",))])
    return {str(key): value for key, value in raw.items() if value is not None}


def convert(raw: Mapping[str, Any], kind: type[T]) -> T:
    """``raw`` as a ``kind`` struct.

    Raises:
        InvalidJson: a missing required key or a value of the wrong type, at its JSON path.
    """
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise InvalidJson([json_detail(str(exc))]) from exc


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_EXPECTED = re.compile(r"Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]*)`")
_JS_TYPES = {
    "int": "error.expected.jsnumber",
    "float": "error.expected.jsnumber",
    "str": "error.expected.jsstring",
    "bool": "error.expected.jsboolean",
    "array": "error.expected.jsarray",
    "object": "error.expected.jsobject",
}


def json_detail(message: str) -> Detail:
    """A msgspec validation message turned into Marathon's path and play-json error key."""
    at = _AT.search(message)
    path = _json_path(at.group("path")) if at else ""
    text = message[: at.start()] if at else message
    if missing := _MISSING.match(text):
        return Detail(f"{path}/{missing.group('field')}", ("error.path.missing",))
    if expected := _EXPECTED.match(text):
        wanted = [name for name in expected.group("expected").split(" | ") if name != "null"]
        if wanted == ["int"] and expected.group("got") == "float":
            return Detail(path or ROOT, ("error.expected.int",))
        return Detail(path or ROOT, (_JS_TYPES.get(wanted[0] if wanted else "", text),))
    if text.startswith("Invalid enum value"):
        return Detail(path or ROOT, ("error.expected.validenumvalue",))
    return Detail(path or ROOT, (text,))


def _json_path(msgspec_path: str) -> str:
    """``.healthChecks[0].portIndex`` becomes ``/healthChecks(0)/portIndex``; dict keys (``[...]``) drop out."""
    path = msgspec_path.replace("[...]", "")
    path = re.sub(r"\[(\d+)\]", r"(\1)", path)
    return path.replace(".", "/")


def _join(prefix: str, path: str) -> str:
    return prefix if path == ROOT else prefix + path


# --- normalisation (Marathon's AppNormalization) --------------------------------------------------------------

# The Mesos fetcher's archive suffixes: Marathon extracts a deprecated `uris` entry only when it names one.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".tgz", ".tbz2", ".txz", ".zip")
_MARATHON_CHECKS = frozenset({"HTTP", "HTTPS", "TCP"})
_MESOS_CHECKS = frozenset({"MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"})


def is_archive(uri: str) -> bool:
    """Whether the path of ``uri`` ends with a suffix the Mesos fetcher extracts (``FetchUri.isExtract``)."""
    return urlsplit(uri).path.endswith(ARCHIVE_SUFFIXES)


def normalised(app: App, *, given: frozenset[str], base: str, problems: list[Problem]) -> App:
    """``app`` in canonical form: absolute ids, deprecated keys translated, defaults Marathon fills in.

    ``given`` names the keys the client sent (a default ``portDefinitions`` differs from a given one).
    Problems found while translating are appended to ``problems``.
    """
    app_id = _resolve(app.id, base, "/id", problems)
    deps = [_resolve(dep, parent(app_id), f"/dependencies({i})", problems) for i, dep in enumerate(app.dependencies)]
    return msgspec.structs.replace(
        app,
        id=app_id,
        dependencies=deps,
        port_definitions=_port_definitions(app, given, problems),
        ports=None,
        fetch=_fetch(app, problems),
        uris=None,
        health_checks=[_with_port_index(check) for check in app.health_checks],
        constraints=[[c[0], c[1].upper(), *c[2:]] if len(c) >= 2 else c for c in app.constraints],
        version=None,
        version_info=None,
    )


def _port_definitions(app: App, given: frozenset[str], problems: list[Problem]) -> list[PortDefinition]:
    if app.ports is not None:
        if "portDefinitions" not in given:
            return [PortDefinition(port=port) for port in app.ports]
        if [definition.port for definition in app.port_definitions] != app.ports:
            problems.append((ROOT, "cannot specify both ports and port definitions"))
    elif "portDefinitions" not in given and not _host_networking(app):
        return []  # Marathon's default port exists only with host networking (applyDefaultPortDefinitions)
    return app.port_definitions


def _fetch(app: App, problems: list[Problem]) -> list[FetchUri]:
    if not app.uris:
        return app.fetch
    if app.fetch:
        problems.append(("/uris", "may not be set in conjunction with fetch"))
        return app.fetch
    return [FetchUri(uri=uri, extract=is_archive(uri)) for uri in app.uris]


def _with_port_index(check: HealthCheck) -> HealthCheck:
    # Marathon reads a port-based check without port or portIndex as portIndex 0 (normalizeHealthChecks).
    if check.protocol != "COMMAND" and check.port is None and check.port_index is None:
        return msgspec.structs.replace(check, port_index=0)
    return check


def _host_networking(app: App) -> bool:
    if any(network.mode != "host" for network in app.networks):
        return False
    docker = app.container.docker if app.container else None
    return docker is None or docker.network in (None, "HOST")


# --- rules (AppValidation, SchedulingValidation, PathId) ------------------------------------------------------

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
    if app.port_definitions and not _host_networking(app):
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
