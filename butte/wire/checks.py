"""mesos.v1 health checks and checks: ``HealthCheck``, ``CheckInfo`` and ``CheckStatusInfo``.

``TaskInfo.health_check``/``check`` and ``TaskStatus.check_status`` stay ``msgspec.Raw`` in ``wire/mesos.py``
so that tasks round-trip untouched; the agent decodes them here when it runs a task's checks. Defaults are
Mesos's (delay 15 s, interval 10 s, timeout 20 s, 3 consecutive failures, grace period 10 s).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from butte.wire.base import Message, decode, encode
from butte.wire.mesos import CommandInfo

CheckType = Literal["UNKNOWN", "COMMAND", "HTTP", "TCP"]


class HealthCheckHTTP(Message):
    port: int
    scheme: str | None = None
    path: str | None = None
    statuses: list[int] = []
    protocol: str | None = None


class TCPCheck(Message):
    port: int


class HealthCheck(Message):
    type: CheckType | None = None
    delay_seconds: float = 15.0
    interval_seconds: float = 10.0
    timeout_seconds: float = 20.0
    consecutive_failures: int = 3
    grace_period_seconds: float = 10.0
    command: CommandInfo | None = None
    http: HealthCheckHTTP | None = None
    tcp: TCPCheck | None = None


class CheckCommand(Message):
    command: CommandInfo


class CheckHTTP(Message):
    port: int
    path: str | None = None


class CheckInfo(Message):
    type: CheckType | None = None
    command: CheckCommand | None = None
    http: CheckHTTP | None = None
    tcp: TCPCheck | None = None
    delay_seconds: float = 15.0
    interval_seconds: float = 10.0
    timeout_seconds: float = 20.0


class CommandCheckStatus(Message):
    exit_code: int | None = None


class HTTPCheckStatus(Message):
    status_code: int | None = None


class TCPCheckStatus(Message):
    succeeded: bool | None = None


class CheckStatusInfo(Message):
    type: CheckType | None = None
    command: CommandCheckStatus | None = None
    http: HTTPCheckStatus | None = None
    tcp: TCPCheckStatus | None = None


def decode_health_check(raw: msgspec.Raw) -> HealthCheck | None:
    """``TaskInfo.health_check``, or None when the task has none.

    Raises:
        ValidationError: the health check does not fit ``HealthCheck``.
    """
    return decode(bytes(raw), HealthCheck) if len(raw) else None


def decode_check(raw: msgspec.Raw) -> CheckInfo | None:
    """``TaskInfo.check``, or None when the task has none.

    Raises:
        ValidationError: the check does not fit ``CheckInfo``.
    """
    return decode(bytes(raw), CheckInfo) if len(raw) else None


def health_check_type(check: HealthCheck) -> CheckType:
    """The type, inferred from the sub-message present when an old-style health check leaves it out."""
    if check.type is not None:
        return check.type
    if check.command is not None:
        return "COMMAND"
    return "HTTP" if check.http is not None else "TCP" if check.tcp is not None else "UNKNOWN"


def check_info_type(check: CheckInfo) -> CheckType:
    """The type of a check, inferred from the sub-message present when it is left out."""
    if check.type is not None:
        return check.type
    if check.command is not None:
        return "COMMAND"
    return "HTTP" if check.http is not None else "TCP" if check.tcp is not None else "UNKNOWN"


def check_status_result(check_type: CheckType, value: int | bool | None) -> CheckStatusInfo:
    """The ``CheckStatusInfo`` of one result; ``None`` gives the empty status Mesos sends while unknown."""
    if check_type == "COMMAND":
        exit_code = value if isinstance(value, int) and not isinstance(value, bool) else None
        return CheckStatusInfo(type="COMMAND", command=CommandCheckStatus(exit_code=exit_code))
    if check_type == "HTTP":
        status_code = value if isinstance(value, int) and not isinstance(value, bool) else None
        return CheckStatusInfo(type="HTTP", http=HTTPCheckStatus(status_code=status_code))
    succeeded = value if isinstance(value, bool) else None
    return CheckStatusInfo(type=check_type, tcp=TCPCheckStatus(succeeded=succeeded))


def to_raw(status: CheckStatusInfo) -> msgspec.Raw:
    """A check status as the ``msgspec.Raw`` that ``TaskStatus.check_status`` holds."""
    return msgspec.Raw(encode(status))
