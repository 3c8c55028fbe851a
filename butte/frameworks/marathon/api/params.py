"""Request-side helpers of the Marathon API: the app keys, query parsing, bodies and the tail of a path.

Marathon's query parameters come from Jersey, which reads booleans case-insensitively: the Python client sends
``force=True`` (``requests`` formats a Python bool). ``embed`` is repeatable and its values carry prefixes
(``app.``, ``apps.``, ``group.apps.``) that Marathon strips. Label selectors are the comma-separated AND of
``key``, ``key==v``, ``key!=v``, ``key in (a,b)`` and ``key notin (a,b)`` (``LabelSelectorParsers.scala``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec
from aiohttp import web
from multidict import MultiMapping

from butte.core.errors import ButteError, NotFound, ValidationError
from butte.edge import UnsupportedMediaType
from butte.frameworks.marathon.control import MarathonControl
from butte.frameworks.marathon.validation import Detail, InvalidJson

CONTROL: Final[web.AppKey[MarathonControl]] = web.AppKey("marathon_control")
ADVERTISED: Final = web.AppKey("marathon_advertised", str)
HTTP_PORT: Final = web.AppKey("marathon_http_port", int)

# Embeds Marathon accepts on apps; anything else is ignored, as Marathon ignores it.
APP_EMBEDS: Final = frozenset(
    {"tasks", "counts", "deployments", "readiness", "lastTaskFailure", "failures", "taskStats"}
)
_EMBED_PREFIXES: Final = ("group.apps.", "apps.", "app.")

LabelSelector = Callable[[Mapping[str, str]], bool]


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer encoded by msgspec: ``GET /v2/apps`` with a thousand tasks is the API's hot path."""
    return web.Response(body=msgspec.json.encode(body), status=status, headers=headers, content_type="application/json")


def control_of(request: web.Request) -> MarathonControl:
    """The framework port this application serves."""
    return request.app[CONTROL]


def flag(request: web.Request, name: str, *, default: bool = False) -> bool:
    """A boolean query parameter (``true``/``True``/``1``); absent means ``default``.

    Raises:
        ValidationError: a value that is not a boolean.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValidationError(name, f"'{raw}' is not a boolean")


def app_embeds(values: Iterable[str]) -> frozenset[str]:
    """The app embeds asked for (``embed`` values), prefixes stripped; ``failures`` expands as in Marathon."""
    found: set[str] = set()
    for raw in values:
        value = raw.strip()
        for prefix in _EMBED_PREFIXES:
            if value.startswith(prefix):
                value = value.removeprefix(prefix)
                break
        if value in APP_EMBEDS:
            found.add(value)
    if "failures" in found:
        found |= {"tasks", "lastTaskFailure", "deployments"}
    if "tasks" in found:
        # Marathon: embedding tasks also embeds deployments.
        found.add("deployments")
    return frozenset(found)


def group_embeds(query: MultiMapping[str]) -> tuple[bool, bool, frozenset[str]]:
    """(groups, apps, app embeds) of a group read; with no ``embed`` Marathon shows groups and apps."""
    values = [raw.strip() for raw in query.getall("embed", [])]
    if not values:
        return True, True, frozenset()
    groups = "group.groups" in values
    apps = "group.apps" in values or any(v.startswith("group.apps.") for v in values)
    app_values = [v for v in values if v.startswith("group.apps.")]
    return groups, apps, app_embeds(app_values)


_SELECTOR = re.compile(
    r"""\s*(?P<key>[^\s,=!()]+)\s*
        (?:(?P<op>==|!=|=)\s*(?P<value>[^,()]*?)\s*
          |\s(?P<setop>in|notin)\s*\((?P<set>[^)]*)\)\s*)?
        (?:,|$)""",
    re.VERBOSE,
)


def label_selector(text: str) -> LabelSelector:
    """A predicate over an app's labels from Marathon's selector syntax.

    Raises:
        ValidationError: the selector does not parse.
    """
    checks: list[LabelSelector] = []
    position = 0
    while position < len(text):
        match = _SELECTOR.match(text, position)
        if match is None or match.end() == position:
            raise ValidationError("label", f"Invalid label selector: '{text}'")
        checks.append(_one_check(match))
        position = match.end()
    return lambda labels: all(check(labels) for check in checks)


def _one_check(match: re.Match[str]) -> LabelSelector:
    key = match["key"]
    if match["op"] is not None:
        value, negate = match["value"], match["op"] == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if match["setop"] is not None:
        members = frozenset(part.strip() for part in match["set"].split(","))
        inside = match["setop"] == "in"
        return lambda labels: key in labels and (labels[key] in members) == inside
    return lambda labels: key in labels


def tail_segments(request: web.Request) -> list[str]:
    """The path after the resource's prefix, split on ``/`` with empty segments dropped.

    The Python client builds ``/v2/apps/%s`` from absolute ids, so ``/v2/apps//shop/web`` must mean
    ``/shop/web``: Marathon's ``{id:.+}`` routes accept it.
    """
    return [part for part in request.match_info.get("tail", "").split("/") if part]


async def read_json(request: web.Request) -> Any:
    """The request's JSON body.

    Raises:
        UnsupportedMediaType: a Content-Type other than JSON (Jersey answers 415).
        InvalidJson: a body that is not JSON (400 "Invalid JSON" with details).
    """
    content_type = request.headers.get("Content-Type")
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() not in ("application/json", ""):
        raise UnsupportedMediaType(f"Unsupported media type '{content_type}', expecting application/json")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson([Detail("/", (f"error.invalid.json: {exc}",))]) from exc


class MethodNotAllowed(ButteError):
    """A method the resource does not answer (405)."""


def not_found() -> NotFound:
    """The error for a path no resource answers (newer Marathon: ``URI not found``)."""
    return NotFound("URI not found")
