"""The kit's ZooKeeper ensemble: a node that cannot start fails the start at once, and says why."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from butte.testing.process import ProcessError
from butte.testing.zookeeper import ZooKeeperEnsemble, server_mode, unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]


async def test_a_node_that_cannot_bind_its_port_fails_the_start_with_its_log(tmp_path: Path) -> None:
    ensemble = ZooKeeperEnsemble(tmp_path, size=3)
    squatted = ensemble.client_ports[2]
    started = time.monotonic()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", squatted))
        squatter.listen()
        with pytest.raises(ProcessError) as failure:
            async with ensemble:
                pass
    message = str(failure.value)
    assert "ZooKeeper nodes exited while the ensemble formed" in message
    assert "{3: " in message
    assert "Address already in use" in message
    assert time.monotonic() - started < 25, "an exited node must fail the start before the 30 s deadline"
    assert all(server_mode(port) is None for port in ensemble.client_ports[:2]), "the other nodes are stopped"
