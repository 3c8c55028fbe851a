"""Health check and check structs: Mesos's defaults, type inference, and check_status as it goes on the wire."""

from __future__ import annotations

import msgspec
import pytest

from butte.core.errors import ValidationError
from butte.wire.base import NO_RAW, decode, encode
from butte.wire.checks import (
    CheckType,
    check_info_type,
    check_status_result,
    decode_check,
    decode_health_check,
    health_check_type,
    to_raw,
)
from butte.wire.mesos import TaskInfo


def test_health_check_defaults_are_mesos_s() -> None:
    check = decode_health_check(msgspec.Raw(b'{"type": "TCP", "tcp": {"port": 80}}'))
    assert check is not None
    assert (check.delay_seconds, check.interval_seconds, check.timeout_seconds) == (15.0, 10.0, 20.0)
    assert (check.consecutive_failures, check.grace_period_seconds) == (3, 10.0)


def test_absent_checks_decode_to_none_and_bad_ones_raise() -> None:
    assert decode_health_check(NO_RAW) is None and decode_check(NO_RAW) is None
    with pytest.raises(ValidationError):
        decode_health_check(msgspec.Raw(b'{"type": "HTTP", "http": {"port": "eighty"}}'))


def test_type_is_inferred_from_the_sub_message_when_missing() -> None:
    old_style = decode_health_check(msgspec.Raw(b'{"command": {"value": "true"}}'))
    assert old_style is not None and health_check_type(old_style) == "COMMAND"
    check = decode_check(msgspec.Raw(b'{"http": {"port": 8080, "path": "/ready"}}'))
    assert check is not None and check_info_type(check) == "HTTP"


def test_task_info_keeps_its_checks_untouched() -> None:
    text = b'{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},"check":{"type":"TCP","tcp":{"port":1}}}'
    task = decode(text, TaskInfo)
    assert encode(task) == text


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("COMMAND", 3, b'{"type":"COMMAND","command":{"exit_code":3}}'),
        ("COMMAND", None, b'{"type":"COMMAND","command":{}}'),
        ("HTTP", 503, b'{"type":"HTTP","http":{"status_code":503}}'),
        ("TCP", True, b'{"type":"TCP","tcp":{"succeeded":true}}'),
        ("TCP", None, b'{"type":"TCP","tcp":{}}'),
    ],
)
def test_check_status_on_the_wire(kind: CheckType, value: int | bool | None, expected: bytes) -> None:
    assert bytes(to_raw(check_status_result(kind, value))) == expected
