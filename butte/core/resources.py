"""Mesos resource arithmetic: fixed-point scalars, port ranges and sets, keyed by (name, role).

Scalars are held as integer thousandths, as Mesos's fixed-point ``Value::Scalar`` does, so ``0.1 + 0.2``
equals ``0.3`` exactly and a subtraction never leaves ``-0.0000001`` behind. Units are implied by the
name: ``cpus`` in cores, ``mem`` and ``disk`` in MB. Roles are static: ``"*"`` is unreserved, anything
else is reserved for that role; reservation refinement, disks and revocable resources are out of scope.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, final

from butte.core import ranges
from butte.core.errors import ValidationError
from butte.core.ranges import RangeList

DEFAULT_ROLE = "*"
# The ports an agent offers when its resources do not say (Mesos's default): tasks bind these.
DEFAULT_PORTS = (31000, 32000)
FLAT_NAMES = ("cpus", "gpus", "mem", "disk")
"""Names that Mesos's flat ``/master/state`` resources object always carries."""

Kind = Literal["SCALAR", "RANGES", "SET"]
Key = tuple[str, str]
Value = ranges.ValueForm
_Stored = int | RangeList | frozenset[str]  # scalars as thousandths


@final
@dataclass(frozen=True, slots=True)
class Entry:
    """One resource: a name, a role and a value (float for SCALAR, ranges, or a set of items)."""

    name: str
    role: str
    value: Value

    @property
    def kind(self) -> Kind:
        """SCALAR, RANGES or SET, from the value's type."""
        if isinstance(self.value, tuple):
            return "RANGES"
        if isinstance(self.value, frozenset):
            return "SET"
        return "SCALAR"


@final
@dataclass(frozen=True, slots=True, repr=False)
class Resources:
    """An immutable bag of resources; build it with :meth:`parse`, :meth:`from_entries` or ``+``."""

    _items: Mapping[Key, _Stored] = field(default_factory=dict)

    @staticmethod
    def empty() -> Resources:
        """No resources at all."""
        return _EMPTY

    @staticmethod
    def parse(text: str, default_role: str = DEFAULT_ROLE) -> Resources:
        """Parse the ``--resources`` flag: ``cpus:4;mem(role):2048;ports:[1-2]`` or a JSON list.

        Raises:
            ValidationError: a value is negative, not a number, a malformed range or set, or one
                name is used with two types; ``field`` names the resource.
        """
        stripped = text.strip()
        if stripped.startswith("["):
            raw = ranges.read_json_resources(stripped, default_role)
        else:
            raw = ranges.read_flag_resources(stripped, default_role)
        return Resources.from_entries(Entry(name, role, value) for name, role, value in raw)

    @staticmethod
    def from_entries(entries: Iterable[Entry]) -> Resources:
        """Sum entries into one value; zero scalars and empty ranges or sets are dropped.

        Raises:
            ValidationError: an entry is negative, NaN or malformed, or one name has two types.
        """
        kinds: dict[str, Kind] = {}
        items: dict[Key, _Stored] = {}
        for entry in entries:
            if kinds.setdefault(entry.name, entry.kind) != entry.kind:
                raise ValidationError(entry.name, f"used as both {kinds[entry.name]} and {entry.kind}")
            stored = _store(entry)
            if stored:
                key = (entry.name, entry.role)
                mine = items.get(key)
                items[key] = stored if mine is None else _combine(key, mine, stored)
        return Resources(items)

    @staticmethod
    def sum(parts: Iterable[Resources]) -> Resources:
        """All the parts added up (empty when there are none)."""
        total = _EMPTY
        for part in parts:
            total = total + part
        return total

    def entries(self) -> list[Entry]:
        """The resources one (name, role) at a time, scalars back as floats."""
        return [Entry(name, role, _load(value)) for (name, role), value in self._items.items()]

    def __add__(self, other: Resources) -> Resources:
        """Sum: scalars add, ranges and sets unite.

        Raises:
            ValueError: the same (name, role) has different types on the two sides.
        """
        if not other._items:
            return self
        if not self._items:
            return other
        items = dict(self._items)
        for key, value in other._items.items():
            mine = items.get(key)
            items[key] = value if mine is None else _combine(key, mine, value)
        return Resources(items)

    def __sub__(self, other: Resources) -> Resources:
        """Difference; there is no clipping.

        Raises:
            ValueError: ``other`` is not contained in ``self``.
        """
        if not self.contains(other):
            raise ValueError(f"cannot subtract {other} from {self}: not contained")
        items = dict(self._items)
        for key, value in other._items.items():
            left = _reduce(items[key], value)
            if left:
                items[key] = left
            else:
                del items[key]
        return Resources(items)

    def contains(self, other: Resources) -> bool:
        """Whether every resource of ``other`` (with its role) is in ``self``."""
        mine = self._items
        for key, value in other._items.items():
            have = mine.get(key)
            if have is None or not _covers(have, value):
                return False
        return True

    def is_empty(self) -> bool:
        """Whether there is nothing at all."""
        return not self._items

    def scalar(self, name: str) -> float:
        """Sum of a scalar over all roles; 0.0 when absent."""
        milli = sum(v for (n, _), v in self._items.items() if n == name and isinstance(v, int))
        return milli / 1000

    def ranges(self, name: str) -> list[tuple[int, int]]:
        """The coalesced ranges of ``name`` over all roles."""
        merged: RangeList = ()
        for (n, _), v in self._items.items():
            if n == name and isinstance(v, tuple):
                merged = ranges.union(merged, v)
        return list(merged)

    def set_items(self, name: str) -> frozenset[str]:
        """The items of a SET resource over all roles."""
        found: frozenset[str] = frozenset()
        for (n, _), v in self._items.items():
            if n == name and isinstance(v, frozenset):
                found |= v
        return found

    def names(self) -> set[str]:
        """Resource names present."""
        return {name for name, _ in self._items}

    def roles(self) -> set[str]:
        """Roles present (``"*"`` for unreserved)."""
        return {role for _, role in self._items}

    def filter_role(self, role: str) -> Resources:
        """Only the resources of one role."""
        return Resources({k: v for k, v in self._items.items() if k[1] == role})

    def unreserved(self) -> Resources:
        """Only the ``"*"`` resources."""
        return self.filter_role(DEFAULT_ROLE)

    def with_role(self, role: str) -> Resources:
        """The same resources, all moved to ``role``."""
        items: dict[Key, _Stored] = {}
        for (name, _), value in self._items.items():
            key = (name, role)
            mine = items.get(key)
            items[key] = value if mine is None else _combine(key, mine, value)
        return Resources(items)

    def quantities(self) -> dict[str, float]:
        """Scalar amounts by name over all roles, with ranges counted as their number of ports (for DRF)."""
        return {name: milli / 1000 for name, milli in self.milli_quantities().items()}

    def milli_quantities(self) -> dict[str, int]:
        """:meth:`quantities` in integer thousandths; the allocator's hot loop works on these."""
        totals: dict[str, int] = {}
        for (name, _), value in self._items.items():
            if isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
            elif isinstance(value, tuple):
                totals[name] = totals.get(name, 0) + ranges.count(value) * 1000
        return totals

    def allocatable(self, min: Resources) -> bool:
        """Whether an offer is worth making: non-empty and at least one of ``min``'s quantities is met.

        Mesos's ``--min_allocatable_resources`` default ``cpus:0.01|mem:32`` is either-or, so each
        entry of ``min`` is one alternative; an empty ``min`` accepts anything non-empty.
        """
        if not self._items:
            return False
        wanted = min.milli_quantities()
        if not wanted:
            return True
        have = self.milli_quantities()
        return any(have.get(name, 0) >= amount for name, amount in wanted.items())

    def to_flat(self) -> dict[str, float | str]:
        """The flat ``/master/state`` object: scalars as floats, ranges ``"[a-b, c-d]"``, sets ``"{x,y}"``."""
        flat: dict[str, float | str] = dict.fromkeys(FLAT_NAMES, 0.0)
        for name in sorted(self.names()):
            sample = next(v for (n, _), v in self._items.items() if n == name)
            if isinstance(sample, int):
                flat[name] = self.scalar(name)
            elif isinstance(sample, tuple):
                flat[name] = ranges.format_ranges(tuple(self.ranges(name)))
            else:
                flat[name] = ranges.format_set(self.set_items(name))
        return flat

    def __str__(self) -> str:
        """Flag syntax that :meth:`parse` reads back: ``cpus:4;mem(role):2048;ports:[1-2]``."""
        return ";".join(_format_item(name, role, value) for (name, role), value in self._items.items())

    def __repr__(self) -> str:
        """``Resources('cpus:4;mem:2048')``."""
        return f"Resources({str(self)!r})"


_EMPTY = Resources()


def _store(entry: Entry) -> _Stored:
    value = entry.value
    if not entry.name or not entry.role:
        raise ValidationError(entry.name, "resource name and role must be non-empty")
    if isinstance(value, tuple):
        try:
            return ranges.coalesce(value)
        except ValueError as exc:
            raise ValidationError(entry.name, str(exc)) from exc
    if isinstance(value, frozenset):
        if any(not item for item in value):
            raise ValidationError(entry.name, "set items must be non-empty")
        return value
    if not math.isfinite(value) or value < 0:
        raise ValidationError(entry.name, f"scalar value {value} must be a finite number >= 0")
    return round(value * 1000)


def _load(value: _Stored) -> Value:
    return value / 1000 if isinstance(value, int) else value


def _combine(key: Key, a: _Stored, b: _Stored) -> _Stored:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return ranges.union(a, b)
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a | b
    raise ValueError(f"resource {key[0]}({key[1]}) has two different types")


def _reduce(a: _Stored, b: _Stored) -> _Stored:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return ranges.subtract(a, b)
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a - b
    raise ValueError("cannot subtract resources of different types")


def _covers(have: _Stored, want: _Stored) -> bool:
    if isinstance(have, int):
        return isinstance(want, int) and have >= want
    if isinstance(have, tuple):
        return isinstance(want, tuple) and ranges.contains(have, want)
    return isinstance(want, frozenset) and want <= have


def _format_item(name: str, role: str, value: _Stored) -> str:
    label = name if role == DEFAULT_ROLE else f"{name}({role})"
    if isinstance(value, int):
        text = str(value // 1000) if value % 1000 == 0 else repr(value / 1000)
    elif isinstance(value, tuple):
        text = ranges.format_ranges(value)
    else:
        text = ranges.format_set(value)
    return f"{label}:{text}"


AttributeValue = float | RangeList | frozenset[str] | str


@final
@dataclass(frozen=True, slots=True)
class Attributes:
    """Agent attributes (``--attributes rack:a;zone:1``), in the order given."""

    items: tuple[tuple[str, AttributeValue], ...] = ()

    @staticmethod
    def parse(text: str) -> Attributes:
        """Parse ``name:value;...``: a number is SCALAR, ``[..]`` RANGES, ``{..}`` SET, anything else TEXT.

        Raises:
            ValidationError: a pair has no ``:`` or an empty name, or a range is malformed.
        """
        items: list[tuple[str, AttributeValue]] = []
        for token in text.split(";"):
            if not token.strip():
                continue
            name, sep, raw = (part.strip() for part in token.partition(":"))
            if not sep or not name:
                raise ValidationError(name or "attributes", f"expected name:value, got {token.strip()!r}")
            items.append((name, _attribute_value(name, raw)))
        return Attributes(tuple(items))

    def __iter__(self) -> Iterator[tuple[str, AttributeValue]]:
        """The ``(name, value)`` pairs in order."""
        return iter(self.items)

    def __len__(self) -> int:
        """Number of attributes."""
        return len(self.items)

    def to_flat(self) -> dict[str, float | str]:
        """The ``/master/state`` form: ``{"rack": "a", "zone": 1.0, "ports": "[1-2]"}``."""
        return {name: _flat_attribute(value) for name, value in self.items}


def _attribute_value(name: str, raw: str) -> AttributeValue:
    if not raw.startswith(("[", "{")):
        try:
            number = float(raw)
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw
    try:
        return ranges.parse_value(raw)
    except ValueError as exc:
        raise ValidationError(name, f"bad value {raw!r}: {exc}") from exc


def _flat_attribute(value: AttributeValue) -> float | str:
    if isinstance(value, tuple):
        return ranges.format_ranges(value)
    if isinstance(value, frozenset):
        return ranges.format_set(value)
    return value


def detect_host_resources(cpu_count: int, mem_total_mb: float, disk_total_mb: float) -> Resources:
    """The agent's resources when ``--resources`` is not given, by Mesos's rules.

    cpus = cores; mem = total - 1 GB (half when under 2 GB); disk = total - 5 GB (half when under
    10 GB); ports ``[31000-32000]``. The caller reads the host; this stays pure.

    Raises:
        ValidationError: a total is negative or not finite.
    """
    mem_mb = mem_total_mb / 2 if mem_total_mb < 2048 else mem_total_mb - 1024
    disk_mb = disk_total_mb / 2 if disk_total_mb < 10240 else disk_total_mb - 5120
    return Resources.from_entries(
        [
            Entry("cpus", DEFAULT_ROLE, float(cpu_count)),
            Entry("mem", DEFAULT_ROLE, mem_mb),
            Entry("disk", DEFAULT_ROLE, disk_mb),
            Entry("ports", DEFAULT_ROLE, (DEFAULT_PORTS,)),
        ]
    )
