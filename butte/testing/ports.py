"""Loopback ports for the kit's listeners, chosen where no outgoing connection can take them first.

A port asked of the kernel with ``bind(0)`` comes from the ephemeral range, the same range the kernel draws
the local port of every outgoing connection from. Between choosing a port and the child binding it (a JVM
takes a second or more to get there) any connect() on the machine may be given that port, and the child then
fails with EADDRINUSE: a ZooKeeper node that cannot bind its client port exits, and its ensemble never forms.
Ports below the ephemeral range are never handed to outgoing connections, so only another listener can hold
one; each is checked free when chosen, and this process never hands out the same one twice. They stay below
the ports agents offer to tasks by default, which a task may bind later.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

from butte.core.resources import DEFAULT_PORTS

EPHEMERAL_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
# The lowest port the kit chooses: above the registered services most machines run.
LOWEST_PORT: Final = 10_000
# Below this many candidate ports the range is too narrow to choose from at random; bind(0) is used instead.
MIN_CANDIDATES: Final = 1_000
ATTEMPTS: Final = 200

_handed_out: set[int] = set()


def ephemeral_range_start(range_file: Path = EPHEMERAL_RANGE_FILE) -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read, Linux's default)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def kernel_chosen_port() -> int:
    """A free port the kernel picks (from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range and the agents' default task
    ports where the machine allows."""
    upper = min(ephemeral_range_start(), DEFAULT_PORTS[0])
    if upper - LOWEST_PORT >= MIN_CANDIDATES:
        for _ in range(ATTEMPTS):
            port = random.randrange(LOWEST_PORT, upper)
            if port not in _handed_out and is_free(port):
                _handed_out.add(port)
                return port
    port = kernel_chosen_port()
    _handed_out.add(port)
    return port
