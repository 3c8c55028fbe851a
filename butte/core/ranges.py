"""Mesos ``Value`` forms: inclusive integer ranges, sets, and the readers of their text and JSON spellings.

A :data:`RangeList` is always sorted and coalesced: no two ranges overlap or touch, so two equal sets of
ports have one spelling and ``==`` works. Text forms follow Mesos: ``[31000-32000, 33000-33010]`` for
ranges and ``{a,b}`` for sets. :func:`read_flag_resources` and :func:`read_json_resources` read the two
forms of ``--resources`` into plain ``(name, role, value)`` triples that :mod:`butte.core.resources` sums.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import cast

from butte.core.errors import ValidationError

RangeList = tuple[tuple[int, int], ...]
"""Sorted, coalesced, inclusive ``(begin, end)`` pairs."""
ValueForm = float | RangeList | frozenset[str]
RawEntry = tuple[str, str, ValueForm]
"""``(name, role, value)`` as read from text or JSON, before it is validated and summed."""


def coalesce(pairs: Iterable[tuple[int, int]]) -> RangeList:
    """Sort ranges and merge those that overlap or touch.

    Raises:
        ValueError: a range has ``begin > end`` or a negative bound.
    """
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(pairs):
        if begin > end or begin < 0:
            raise ValueError(f"invalid range {begin}-{end}")
        if merged and begin <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return tuple(merged)


def union(a: RangeList, b: RangeList) -> RangeList:
    """Ports in either list."""
    if not b:
        return a
    if not a:
        return b
    return coalesce((*a, *b))


def subtract(a: RangeList, b: RangeList) -> RangeList:
    """Ports of ``a`` that are not in ``b``; ``b`` need not be contained in ``a``."""
    result: list[tuple[int, int]] = []
    first = 0
    for begin, end in a:
        while first < len(b) and b[first][1] < begin:
            first += 1
        cursor = begin
        for cut_begin, cut_end in b[first:]:
            if cut_begin > end:
                break
            if cut_begin > cursor:
                result.append((cursor, cut_begin - 1))
            cursor = max(cursor, cut_end + 1)
        if cursor <= end:
            result.append((cursor, end))
    return tuple(result)


def contains(a: RangeList, b: RangeList) -> bool:
    """Whether every port of ``b`` is in ``a``."""
    starts = [begin for begin, _ in a]
    for begin, end in b:
        index = bisect_right(starts, begin) - 1
        if index < 0 or a[index][1] < end:
            return False
    return True


def count(a: RangeList) -> int:
    """Number of ports in the list."""
    return sum(end - begin + 1 for begin, end in a)


def format_ranges(a: RangeList) -> str:
    """Mesos text form: ``[31000-32000, 33000-33010]`` (a single port is written ``[5-5]``)."""
    return "[" + ", ".join(f"{begin}-{end}" for begin, end in a) + "]"


def format_set(items: Iterable[str]) -> str:
    """Mesos text form of a set, items sorted so the output is stable: ``{a,b}``."""
    return "{" + ",".join(sorted(items)) + "}"


def parse_ranges(text: str) -> RangeList:
    """Parse ``[a-b, c-d]``; an empty ``[]`` is allowed.

    Raises:
        ValueError: the text is not a bracketed list of ``begin-end`` pairs of non-negative integers.
    """
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError(f"expected [begin-end, ...], got {text!r}")
    pairs: list[tuple[int, int]] = []
    for part in body[1:-1].split(","):
        if not part.strip():
            continue
        begin, sep, end = part.strip().partition("-")
        if not sep or not begin.strip().isdigit() or not end.strip().isdigit():
            raise ValueError(f"malformed range {part.strip()!r}")
        pairs.append((int(begin), int(end)))
    return coalesce(pairs)


def parse_set(text: str) -> frozenset[str]:
    """Parse ``{a,b}``; empty items are dropped.

    Raises:
        ValueError: the text is not wrapped in braces.
    """
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"expected {{item,...}}, got {text!r}")
    return frozenset(item.strip() for item in body[1:-1].split(",") if item.strip())


def parse_value(raw: str) -> ValueForm:
    """A flag value: ``[..]`` is ranges, ``{..}`` a set, anything else a number.

    Raises:
        ValueError: the text fits none of these.
    """
    text = raw.strip()
    if text.startswith("["):
        return parse_ranges(text)
    if text.startswith("{"):
        return parse_set(text)
    return float(text)


def read_flag_resources(text: str, default_role: str) -> list[RawEntry]:
    """Read the flag form of ``--resources``: ``cpus:4;mem(role):2048;ports:[1-2];zones:{a,b}``.

    Raises:
        ValidationError: a token is not ``name:value`` or ``name(role):value``, or its value is malformed;
            ``field`` is the resource's name.
    """
    entries: list[RawEntry] = []
    for token in text.split(";"):
        if not token.strip():
            continue
        label, sep, raw = token.partition(":")
        name, role = _split_label(label.strip(), default_role)
        if not sep:
            raise ValidationError(name or "resources", f"expected name:value, got {token.strip()!r}")
        try:
            entries.append((name, role, parse_value(raw)))
        except ValueError as exc:
            raise ValidationError(name or "resources", f"bad value {raw.strip()!r}: {exc}") from exc
    return entries


def _split_label(label: str, default_role: str) -> tuple[str, str]:
    name, paren, rest = label.partition("(")
    if not paren:
        return label, default_role
    if not rest.endswith(")") or not rest[:-1].strip():
        raise ValidationError(name.strip() or "resources", f"malformed role in {label!r}")
    return name.strip(), rest[:-1].strip()


def read_json_resources(text: str, default_role: str) -> list[RawEntry]:
    """Read a JSON list of v1 ``Resource`` objects (the JSON form of ``--resources``).

    Raises:
        ValidationError: the JSON is malformed or an object lacks what its ``type`` needs; ``field`` is a
            path such as ``resources[2].scalar``.
    """
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("resources", f"invalid JSON: {exc}") from exc
    items = _as_list(data, "resources")
    return [_json_entry(item, f"resources[{i}]", default_role) for i, item in enumerate(items)]


def _json_entry(item: object, path: str, default_role: str) -> RawEntry:
    name, kind = _member(item, "name", path), _member(item, "type", path)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{path}.name", "expected a non-empty string")
    role = _json_role(item, path, default_role)
    if kind == "SCALAR":
        value = _member(_member(item, "scalar", path), "value", f"{path}.scalar")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(f"{path}.scalar", f"resource {name!r} needs a finite number")
        if value < 0:
            raise ValidationError(f"{path}.scalar", f"resource {name!r} cannot be negative")
        return name, role, float(value)
    if kind == "RANGES":
        found = _as_list(_member(_member(item, "ranges", path), "range", f"{path}.ranges"), path)
        return name, role, tuple(_json_range(r, f"{path}.ranges") for r in found)
    if kind == "SET":
        found = _as_list(_member(_member(item, "set", path), "item", f"{path}.set"), f"{path}.set")
        return name, role, frozenset(str(x) for x in found)
    raise ValidationError(f"{path}.type", f"resource {name!r} has unsupported type {kind!r}")


def _json_role(item: object, path: str, default_role: str) -> str:
    # Reservation refinement lists reservations from the outermost in; the last one owns the resource.
    stack = cast(dict[str, object], item).get("reservations")
    if isinstance(stack, list) and stack:
        role = _member(cast(list[object], stack)[-1], "role", f"{path}.reservations")
    else:
        role = cast(dict[str, object], item).get("role", default_role)
    if not isinstance(role, str) or not role:
        raise ValidationError(f"{path}.role", "expected a non-empty string")
    return role


def _json_range(item: object, path: str) -> tuple[int, int]:
    begin, end = _member(item, "begin", path), _member(item, "end", path)
    for bound in (begin, end):
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            raise ValidationError(path, "range begin and end must be non-negative integers")
    return cast(int, begin), cast(int, end)


def _member(item: object, key: str, path: str) -> object:
    if not isinstance(item, dict):
        raise ValidationError(path, "expected an object")
    if key not in item:
        raise ValidationError(f"{path}.{key}", f"missing {key!r}")
    return cast(object, item[key])


def _as_list(found: object, path: str) -> list[object]:
    if not isinstance(found, list):
        raise ValidationError(path, "expected a list")
    return cast(list[object], found)
