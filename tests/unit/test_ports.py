"""The kit's listener ports: below the ephemeral range, free when handed out, never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from butte.core.resources import DEFAULT_PORTS
from butte.testing import ports


def test_ports_come_from_below_the_ephemeral_range_and_the_task_ports_and_are_never_repeated() -> None:
    upper = min(ports.ephemeral_range_start(), DEFAULT_PORTS[0])
    handed = [ports.free_port() for _ in range(300)]
    assert len(set(handed)) == len(handed)
    if upper - ports.LOWEST_PORT >= ports.MIN_CANDIDATES:
        assert all(ports.LOWEST_PORT <= port < upper for port in handed)


def test_a_port_held_by_a_listener_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        other = ports.kernel_chosen_port()
        picks = iter([held, held, other])
        monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(picks))
        monkeypatch.setattr(ports, "ephemeral_range_start", lambda: 65_000)
        assert ports.free_port() == other


def test_a_narrow_range_below_the_ephemeral_one_falls_back_to_the_kernels_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel_range_start = ports.ephemeral_range_start()
    monkeypatch.setattr(ports, "ephemeral_range_start", lambda: ports.LOWEST_PORT + 10)
    port = ports.free_port()
    assert port >= kernel_range_start
    assert ports.is_free(port)


def test_the_ephemeral_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert ports.ephemeral_range_start(range_file) == 40000
    assert ports.ephemeral_range_start(tmp_path / "missing") == 32768
    range_file.write_text("garbage\n")
    assert ports.ephemeral_range_start(range_file) == 32768
