"""App definitions in, validated and normalised: what ``POST/PUT/PATCH /v2/apps`` and ``/v2/groups`` accept.

Pure. A body is decoded into :class:`butte.wire.marathon.App`; a value of the wrong JSON type is
:class:`InvalidJson` (400, ``error.expected.jsnumber`` style, as Marathon's play-json readers answer), a value
Marathon's validators refuse is :class:`InvalidDefinition` (422 ``Object is not valid``). Both carry
``details``: one :class:`Detail` per JSON path (``/healthChecks(0)/portIndex``), with Marathon's messages.
Normalisation follows Marathon's ``AppNormalization`` (deprecated ``ports``/``uris`` translated, relative ids
made absolute); the rules themselves (``AppValidation``/``SchedulingValidation``) live in
:mod:`butte.frameworks.marathon.app_rules`.

ValidationError
├── InvalidJson          -> 400 {"message": "Invalid JSON", "details": [...]}
└── InvalidDefinition    -> 422 {"message": "Object is not valid", "details": [...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar, final
from urllib.parse import urlsplit

import msgspec

from butte.core.errors import ValidationError
from butte.frameworks.marathon.app_rules import Problem, app_problems, host_networking
from butte.frameworks.marathon.pathid import ROOT, canonical, parent, segment_errors
from butte.wire.marathon import App, FetchUri, HealthCheck, PortDefinition

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
    elif "portDefinitions" not in given and not host_networking(app):
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
