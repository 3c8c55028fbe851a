"""Marathon's path ids: ``/``-separated app and group ids, resolved against their enclosing group.

Pure string arithmetic (Marathon's ``PathId``). A canonical id is absolute, has no empty, ``.`` or ``..``
segment and no trailing slash; the root group is ``/``. Clients send ``/v2/apps//my-app`` (the ``marathon``
client joins ``/v2/apps/`` with an absolute id), so empty segments are simply dropped.
"""

from __future__ import annotations

import re

from butte.core.errors import ValidationError
from butte.frameworks.marathon.model import ROOT

__all__ = ["ROOT", "ancestors", "canonical", "is_under", "parent", "safe_id", "segment_errors", "segments"]

# Marathon's ID_PATH_SEGMENT_PATTERN (PathId.scala): lowercase DNS-like labels joined by dots, or a relative
# `.`/`..`. Its error message quotes the pattern exactly as Marathon writes it.
_SEGMENT = re.compile(r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|\.|\.\.")
SEGMENT_MESSAGE = (
    "must fully match regular expression "
    r"'^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$'"
)


def segments(path: str) -> list[str]:
    """The non-empty segments of a path, as written (``.`` and ``..`` kept)."""
    return [part for part in path.split("/") if part]


def canonical(path: str, base: str = ROOT) -> str:
    """The absolute id of ``path``, read relative to the group ``base`` unless it starts with ``/``.

    ``.`` is dropped, ``..`` climbs one group, empty segments (``//``, a trailing ``/``) vanish.

    Raises:
        ValidationError: field ``id``; ``..`` would climb above the root group.
    """
    parts = segments(path) if path.startswith("/") else segments(base) + segments(path)
    resolved: list[str] = []
    for part in parts:
        if part == ".":
            continue
        if part != "..":
            resolved.append(part)
        elif resolved:
            resolved.pop()
        else:
            raise ValidationError("id", f"path '{path}' climbs above the root group")
    return "/" + "/".join(resolved)


def segment_errors(path: str) -> list[str]:
    """Marathon's message when a segment of ``path`` is not a valid id segment; empty when all are valid."""
    if all(_SEGMENT.fullmatch(part) for part in segments(path)):
        return []
    return [SEGMENT_MESSAGE]


def parent(path: str) -> str:
    """The enclosing group of a canonical id (the root is its own parent, as in Marathon)."""
    head, _, _ = path.rstrip("/").rpartition("/")
    return head or ROOT


def ancestors(path: str) -> list[str]:
    """Every enclosing group of a canonical id, nearest first, ending with ``/`` (empty for the root)."""
    found: list[str] = []
    current = path
    while current != ROOT:
        current = parent(current)
        found.append(current)
    return found


def is_under(path: str, group: str) -> bool:
    """Whether the canonical id ``path`` lies strictly below the group ``group``."""
    if group == ROOT:
        return path != ROOT
    return path.startswith(group + "/")


def safe_id(app_id: str) -> str:
    """The task id prefix of an app: its id without the leading slash, ``/`` replaced by ``_`` (``safePath``)."""
    return "_".join(segments(app_id))
