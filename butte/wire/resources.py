"""``mesos.v1`` Resource, Attribute and Value messages, and their conversions to core types.

Field names follow ``include/mesos/v1/mesos.proto`` exactly. Optional fields default to ``None`` so they
are left out of what we write. Reservation details, disk info and revocable/shared markers are accepted
and kept on the struct, but the core's :class:`~butte.core.resources.Resources` only keeps the role.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import msgspec

from butte.core.errors import ValidationError
from butte.core.ranges import RangeList, coalesce
from butte.core.resources import DEFAULT_ROLE, Attributes, AttributeValue, Entry, Resources
from butte.wire.base import ID, Message

ValueType = Literal["SCALAR", "RANGES", "SET", "TEXT"]


class Scalar(Message):
    """``Value.Scalar``."""

    value: float


class Range(Message):
    """``Value.Range``: inclusive."""

    begin: int
    end: int


class Ranges(Message):
    """``Value.Ranges``."""

    range: list[Range] = msgspec.field(default_factory=list)


class ValueSet(Message):
    """``Value.Set``."""

    item: list[str] = msgspec.field(default_factory=list)


class Text(Message):
    """``Value.Text``."""

    value: str


class Label(Message):
    """``Label``."""

    key: str
    value: str | None = None


class Labels(Message):
    """``Labels``."""

    labels: list[Label] = msgspec.field(default_factory=list)


class AllocationInfo(Message):
    """``Resource.AllocationInfo``: the role an allocated resource is allocated to."""

    role: str | None = None


class ReservationInfo(Message):
    """``Resource.ReservationInfo``, both the deprecated single ``reservation`` and ``reservations[]``."""

    type: Literal["UNKNOWN", "STATIC", "DYNAMIC"] | None = None
    role: str | None = None
    principal: str | None = None
    labels: Labels | None = None


class Persistence(Message):
    """``Resource.DiskInfo.Persistence``."""

    id: str
    principal: str | None = None


class Volume(Message):
    """``Volume`` (only the fields a disk resource uses)."""

    container_path: str
    mode: Literal["RW", "RO"] | None = None
    host_path: str | None = None


class DiskSourcePath(Message):
    """``Resource.DiskInfo.Source.Path`` / ``Mount``."""

    root: str | None = None


class DiskSource(Message):
    """``Resource.DiskInfo.Source``."""

    type: Literal["UNKNOWN", "PATH", "MOUNT", "BLOCK", "RAW"]
    path: DiskSourcePath | None = None
    mount: DiskSourcePath | None = None
    id: str | None = None
    profile: str | None = None


class DiskInfo(Message):
    """``Resource.DiskInfo``."""

    persistence: Persistence | None = None
    volume: Volume | None = None
    source: DiskSource | None = None


class Marker(Message):
    """The empty ``Resource.RevocableInfo`` and ``Resource.SharedInfo``."""


class Resource(Message):
    """``mesos.v1.Resource``."""

    name: str
    type: ValueType
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None
    role: str | None = None
    allocation_info: AllocationInfo | None = None
    reservation: ReservationInfo | None = None
    reservations: list[ReservationInfo] | None = None
    provider_id: ID | None = None
    disk: DiskInfo | None = None
    revocable: Marker | None = None
    shared: Marker | None = None


class Attribute(Message):
    """``mesos.v1.Attribute``."""

    name: str
    type: ValueType
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None
    text: Text | None = None


def resources_from_wire(items: Sequence[Resource], *, field: str = "resources") -> Resources:
    """Core :class:`Resources` from wire ones; the role is the last reservation's, else ``role``, else ``*``.

    Raises:
        ValidationError: a SCALAR has no (or a negative or NaN) ``scalar``, a RANGES no valid ``ranges``,
            a SET no ``set``, the type is TEXT, or a name is used with two types; ``field`` is a path
            such as ``resources[2].scalar``.
    """
    entries = [_entry(item, f"{field}[{i}]") for i, item in enumerate(items)]
    kinds: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if kinds.setdefault(entry.name, entry.kind) != entry.kind:
            raise ValidationError(f"{field}[{i}].type", f"{entry.name!r} is also {kinds[entry.name]}")
    return Resources.from_entries(entries)


def resources_to_wire(resources: Resources, *, allocation_role: str | None = None) -> list[Resource]:
    """Wire resources in the pre-refinement format Mesos uses for non-MULTI_ROLE frameworks (with ``role``).

    With ``allocation_role`` each resource also carries ``allocation_info{role}``.
    """
    info = AllocationInfo(role=allocation_role) if allocation_role is not None else None
    return [_to_resource(entry, info) for entry in resources.entries()]


def attributes_from_wire(items: Sequence[Attribute], *, field: str = "attributes") -> Attributes:
    """Core attributes from wire ones, in order.

    Raises:
        ValidationError: an attribute lacks the value its ``type`` names; ``field`` is its path.
    """
    return Attributes(tuple((a.name, _attribute_value(a, f"{field}[{i}]")) for i, a in enumerate(items)))


def attributes_to_wire(attributes: Attributes) -> list[Attribute]:
    """Wire attributes, in order."""
    return [_to_attribute(name, value) for name, value in attributes]


def _entry(item: Resource, path: str) -> Entry:
    role = _role(item)
    if item.type == "SCALAR":
        if item.scalar is None:
            raise ValidationError(f"{path}.scalar", f"SCALAR resource {item.name!r} has no scalar")
        if not math.isfinite(item.scalar.value) or item.scalar.value < 0:
            raise ValidationError(f"{path}.scalar", f"{item.name!r} must be a finite number >= 0")
        return Entry(item.name, role, item.scalar.value)
    if item.type == "RANGES":
        if item.ranges is None:
            raise ValidationError(f"{path}.ranges", f"RANGES resource {item.name!r} has no ranges")
        return Entry(item.name, role, _ranges(item.ranges, f"{path}.ranges"))
    if item.type == "SET":
        if item.set is None:
            raise ValidationError(f"{path}.set", f"SET resource {item.name!r} has no set")
        return Entry(item.name, role, frozenset(item.set.item))
    raise ValidationError(f"{path}.type", f"resource {item.name!r}: type {item.type} is not supported")


def _role(item: Resource) -> str:
    if item.reservations:
        return item.reservations[-1].role or DEFAULT_ROLE
    return item.role or DEFAULT_ROLE


def _ranges(value: Ranges, path: str) -> RangeList:
    for index, r in enumerate(value.range):
        if r.begin < 0 or r.begin > r.end:
            raise ValidationError(f"{path}.range[{index}]", f"invalid range {r.begin}-{r.end}")
    return coalesce((r.begin, r.end) for r in value.range)


def _to_resource(entry: Entry, info: AllocationInfo | None) -> Resource:
    value = entry.value
    base = Resource(name=entry.name, type=entry.kind, role=entry.role, allocation_info=info)
    if isinstance(value, tuple):
        base.ranges = Ranges(range=[Range(begin=b, end=e) for b, e in value])
    elif isinstance(value, frozenset):
        base.set = ValueSet(item=sorted(value))
    else:
        base.scalar = Scalar(value=float(value))
    return base


def _attribute_value(item: Attribute, path: str) -> AttributeValue:
    if item.type == "SCALAR" and item.scalar is not None:
        return item.scalar.value
    if item.type == "RANGES" and item.ranges is not None:
        return _ranges(item.ranges, f"{path}.ranges")
    if item.type == "SET" and item.set is not None:
        return frozenset(item.set.item)
    if item.type == "TEXT" and item.text is not None:
        return item.text.value
    raise ValidationError(f"{path}.{item.type.lower()}", f"attribute {item.name!r} has no {item.type} value")


def _to_attribute(name: str, value: AttributeValue) -> Attribute:
    if isinstance(value, tuple):
        return Attribute(name=name, type="RANGES", ranges=Ranges(range=[Range(begin=b, end=e) for b, e in value]))
    if isinstance(value, frozenset):
        return Attribute(name=name, type="SET", set=ValueSet(item=sorted(value)))
    if isinstance(value, str):
        return Attribute(name=name, type="TEXT", text=Text(value=value))
    return Attribute(name=name, type="SCALAR", scalar=Scalar(value=float(value)))
