"""Marathon's placement constraints: ``[field, OPERATOR]`` or ``[field, OPERATOR, value]`` (A4).

Pure. A constraint is judged against one agent (its hostname and attributes) and the app's instances already
placed; values are compared as text, the way Marathon's ``Constraints.getValueString`` renders attributes, so
``["rack", "IS", "1"]`` matches a scalar attribute ``rack:1``. Each check answers None (satisfied) or a short
reason, in the style of the other placement stages.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from butte.frameworks.marathon.model import Instance
from butte.wire.mesos import Attribute, Offer

HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})
# Without Mesos fault domains in our offers, the agent attributes "region" and "zone" stand in for them.
DOMAIN_FIELDS = {"@region": "region", "@zone": "zone"}
# Marathon reads a GROUP_BY value of "inf" as Integer.MAX_VALUE.
_INFINITE_GROUPS = 2**31 - 1

_Check = Callable[[str, str, Sequence[str | None]], str | None]


def check_constraint(
    constraint: Sequence[str], hostname: str, attributes: Mapping[str, str], placed: Sequence[Instance]
) -> str | None:
    """None if an offer from this agent satisfies ``constraint`` given the app's ``placed`` instances.

    An agent without the field passes only ``UNLIKE``, as in Marathon. A malformed constraint (unknown
    operator, MAX_PER without a number, bad regex) is never satisfied: validation should have refused it.
    """
    if len(constraint) < 2:
        return f"malformed constraint {list(constraint)}"
    field, operator = constraint[0], constraint[1]
    value = constraint[2] if len(constraint) > 2 else ""
    offered = field_value(field, hostname, attributes)
    if offered is None:
        return None if operator == "UNLIKE" else f"agent has no {field}"
    check = _CHECKS.get(operator)
    if check is None:
        return f"unknown operator {operator}"
    return check(offered, value, [field_value(field, p.host, p.attributes) for p in placed])


def field_value(field: str, hostname: str, attributes: Mapping[str, str]) -> str | None:
    """The text a constraint on ``field`` sees for an agent; None when the agent lacks it."""
    if field in HOSTNAME_FIELDS:
        return hostname
    return attributes.get(DOMAIN_FIELDS.get(field, field))


def attributes_of(offer: Offer) -> dict[str, str]:
    """The offer's attributes as constraint text: text as is, scalars as numbers, ranges and sets bracketed."""
    return {attribute.name: _attribute_text(attribute) for attribute in offer.attributes}


def _attribute_text(attribute: Attribute) -> str:
    if attribute.text is not None:
        return attribute.text.value
    if attribute.scalar is not None:
        return scalar_text(attribute.scalar.value)
    if attribute.ranges is not None:
        # Marathon's spelling: sorted by begin, no spaces ("[1-2,5-6]").
        pairs = sorted((r.begin, r.end) for r in attribute.ranges.range)
        return "[" + ",".join(f"{begin}-{end}" for begin, end in pairs) + "]"
    if attribute.set is not None:
        return "{" + ",".join(sorted(attribute.set.item)) + "}"
    return ""


def scalar_text(value: float) -> str:
    """A scalar as Marathon compares it: at most 3 decimals, half-even, no trailing zeros (``1.0`` -> ``1``).

    Marathon uses Java's ``NumberFormat``, which also groups thousands ("1,000"); we leave grouping out so
    the text can be matched by the number users write.
    """
    rounded = Decimal(repr(value)).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    text = f"{rounded:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _unique(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    return f"an instance already runs on {offered}" if offered in placed else None


def _cluster(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    # Without a value the first placed instance picks the value every later one must share.
    wanted = value if value else (placed[0] if placed else offered)
    return None if offered == wanted else f"{offered} is not {wanted}"


def _group_by(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    # Marathon's checkGroupBy: a value not seen yet is always fine; a seen value only when at least
    # `value` groups exist and it is one of the least used.
    counts = Counter(placed)
    if offered not in counts:
        return None
    minimum = _int_value(value, default=0) or 0
    if len(counts) >= minimum and counts[offered] == min(counts.values()):
        return None
    return f"{offered} already holds {counts[offered]} instances"


def _max_per(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    limit = _int_value(value, default=None)
    if limit is None:
        return f"MAX_PER needs a number, got {value!r}"
    held = sum(1 for found in placed if found == offered)
    return None if held < limit else f"{offered} already holds {held} instances (max {limit})"


def _like(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    matched = _full_match(value, offered)
    if matched is None:
        return f"bad pattern {value!r}"
    return None if matched else f"{offered} does not match {value}"


def _unlike(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    matched = _full_match(value, offered)
    if matched is None:
        return f"bad pattern {value!r}"
    return f"{offered} matches {value}" if matched else None


def _is(offered: str, value: str, placed: Sequence[str | None]) -> str | None:
    return None if offered == value else f"{offered} is not {value}"


def _full_match(pattern: str, text: str) -> bool | None:
    # Java's String.matches is a whole-string match; an empty pattern is refused, as Marathon logs an error.
    if not pattern:
        return None
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return None


def _int_value(text: str, *, default: int | None) -> int | None:
    if text == "inf":
        return _INFINITE_GROUPS
    try:
        return int(text)
    except ValueError:
        return default


_CHECKS: dict[str, _Check] = {
    "UNIQUE": _unique,
    "CLUSTER": _cluster,
    "GROUP_BY": _group_by,
    "MAX_PER": _max_per,
    "LIKE": _like,
    "UNLIKE": _unlike,
    "IS": _is,
}
