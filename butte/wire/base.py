"""Conventions shared by every wire struct.

Mesos v1 JSON is protobuf mapped by stout: snake_case field names, enums as strings, unknown keys ignored,
unset fields omitted, ids as ``{"value": ...}``. Structs derive from :class:`Message`; optional fields
default to ``None`` (or an empty list) so that ``omit_defaults`` leaves them out of what we write.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

import msgspec

from butte.core.errors import ValidationError

T = TypeVar("T")


class Message(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of every wire struct: unknown keys are ignored, defaults are not written."""


# Sub-messages Butte passes through untouched are typed ``msgspec.Raw`` with this default: an empty Raw is
# left out when written, and a union ``Raw | None`` would accept nothing but null.
NO_RAW = msgspec.Raw()


class ID(Message):
    """FrameworkID, AgentID, TaskID, ExecutorID, OfferID, OperationID: ``{"value": "..."}``."""

    value: str


_encoder = msgspec.json.Encoder()


def encode(message: Any) -> bytes:
    """Compact JSON for a struct (or plain data)."""
    return _encoder.encode(message)


def decode(data: bytes | str, kind: type[T]) -> T:
    """Decode JSON into ``kind``.

    Raises:
        ValidationError: the JSON is malformed or does not fit ``kind``; names the field msgspec reports.
    """
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        field, msg = _split_msgspec_error(str(exc))
        raise ValidationError(field, msg) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValidationError("", f"Failed to parse body into JSON: {exc}") from exc


def convert(data: Any, kind: type[T]) -> T:
    """Convert already-parsed builtins into ``kind``.

    Raises:
        ValidationError: the data does not fit ``kind``.
    """
    try:
        return msgspec.convert(data, type=kind)
    except msgspec.ValidationError as exc:
        field, msg = _split_msgspec_error(str(exc))
        raise ValidationError(field, msg) from exc


def to_builtins(message: Any) -> Any:
    """Plain dicts and lists for a struct, as it would be written on the wire."""
    return msgspec.to_builtins(message)


def _split_msgspec_error(text: str) -> tuple[str, str]:
    # msgspec says "Expected `str`, got `int` - at `$.framework_info.name`"; turn the path into the field.
    msg, sep, path = text.rpartition(" - at `")
    if not sep:
        return "", text
    field = path.rstrip("`").removeprefix("$").lstrip(".")
    return field, msg


def require_submessage(call: Message, call_type: str, required: dict[str, str]) -> None:
    """Mesos's check that a call carries the sub-message its type needs ("Expecting 'accept' to be present").

    Raises:
        ValidationError: the sub-message named for ``call_type`` in ``required`` is missing.
    """
    sub = required.get(call_type)
    if sub is not None and getattr(call, sub) is None:
        raise ValidationError(sub, f"Expecting '{sub}' to be present")


def check_uuid(text: str, field: str) -> None:
    """A status update uuid: base64 of exactly 16 bytes (Mesos's ``UUID::fromBytes``).

    Raises:
        ValidationError: not base64, or not 16 bytes.
    """
    if len(b64decode(text, field)) != 16:
        raise ValidationError(field, "Not a valid UUID")


def b64encode(data: bytes) -> str:
    """Protobuf ``bytes`` in JSON: standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, field: str) -> bytes:
    """Decode a protobuf ``bytes`` field.

    Raises:
        ValidationError: ``text`` is not valid base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(field, "not valid base64") from exc
