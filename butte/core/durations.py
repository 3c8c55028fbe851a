"""Mesos (stout) duration strings: ``15secs``, ``10mins``, ``500ms``, ``1.5hrs``."""

from __future__ import annotations

import re

from butte.core.errors import ValidationError

_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "secs": 1.0,
    "mins": 60.0,
    "hrs": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$")


def parse_duration(text: str, field: str = "duration") -> float:
    """Seconds in a stout duration string; a bare number counts as seconds.

    Raises:
        ValidationError: the text is not a number followed by one of ns, us, ms, secs, mins, hrs, days, weeks.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValidationError(field, f"not a duration: {text!r}")
    number, unit = match.groups()
    if unit is None:
        return float(number)
    if unit not in _UNIT_SECONDS:
        raise ValidationError(field, f"unknown duration unit {unit!r} in {text!r}")
    return float(number) * _UNIT_SECONDS[unit]


def format_duration(seconds: float) -> str:
    """The stout spelling of a duration, as Mesos writes it into executor environments (``5secs``)."""
    for unit in ("weeks", "days", "hrs", "mins", "secs"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds == 0:
        return "0secs"
    return f"{round(seconds * 1000)}ms"
