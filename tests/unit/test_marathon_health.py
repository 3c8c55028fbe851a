"""Marathon-side health checks: the pure timing rules, then real probes against loopback servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from butte.frameworks.marathon.health import HealthProbe, http_verdict, next_result, should_kill
from butte.frameworks.marathon.model import HealthResult
from butte.testing.wait import until
from butte.wire.marathon import HealthCheck

CHECK = HealthCheck(protocol="HTTP", grace_period_seconds=10, max_consecutive_failures=3)

# ---------------------------------------------------------------------------------------------- pure rules


def test_a_success_makes_the_task_alive() -> None:
    result = next_result(None, True, None, now=5.0, started_at=0.0, check=CHECK)
    assert result == HealthResult(alive=True, first_success=5.0, last_success=5.0)
    later = next_result(result, True, None, now=9.0, started_at=0.0, check=CHECK)
    assert later.first_success == 5.0 and later.last_success == 9.0


def test_failures_in_the_grace_period_are_ignored_until_the_first_success() -> None:
    ignored = next_result(None, False, "refused", now=9.0, started_at=0.0, check=CHECK)
    assert ignored == HealthResult(alive=False)
    counted = next_result(None, False, "refused", now=10.0, started_at=0.0, check=CHECK)
    assert counted == HealthResult(alive=False, consecutive_failures=1, last_failure=10.0, last_failure_cause="refused")


def test_after_a_first_success_failures_count_even_in_the_grace_period() -> None:
    alive = next_result(None, True, None, now=1.0, started_at=0.0, check=CHECK)
    failed = next_result(alive, False, "HTTP status 500", now=2.0, started_at=0.0, check=CHECK)
    assert not failed.alive and failed.consecutive_failures == 1 and failed.first_success == 1.0
    assert failed.last_failure_cause == "HTTP status 500" and failed.last_success == 1.0


def test_a_success_resets_the_failure_count_but_keeps_the_last_failure() -> None:
    result = HealthResult(alive=False, consecutive_failures=2, last_failure=3.0, last_failure_cause="x")
    healed = next_result(result, True, None, now=20.0, started_at=0.0, check=CHECK)
    assert healed.alive and healed.consecutive_failures == 0 and healed.last_failure == 3.0


def test_kill_after_more_than_max_consecutive_failures() -> None:
    assert not should_kill(HealthResult(alive=False, consecutive_failures=3), CHECK)
    assert should_kill(HealthResult(alive=False, consecutive_failures=4), CHECK)
    never = HealthCheck(max_consecutive_failures=0)
    assert not should_kill(HealthResult(alive=False, consecutive_failures=100), never)


@pytest.mark.parametrize(
    ("status", "ignore_1xx", "passed"),
    [(200, False, True), (302, False, True), (399, False, True), (400, False, False), (503, False, False),
     (101, False, False), (101, True, None)],
)  # fmt: skip
def test_http_verdict(status: int, ignore_1xx: bool, passed: bool | None) -> None:
    assert http_verdict(status, HealthCheck(ignore_http1xx=ignore_1xx))[0] is passed


# ---------------------------------------------------------------------------------------------- real probes

Results = list[tuple[str, int, HealthResult]]


@pytest.fixture
async def probe_and_results() -> AsyncIterator[tuple[HealthProbe, Results]]:
    results: Results = []
    probe = HealthProbe(lambda task_id, index, result: results.append((task_id, index, result)), clock=lambda: 100.0)
    yield probe, results
    await probe.close()


async def serve(status: Callable[[], int]) -> TestServer:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status(), text=request.path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def quick(protocol: str, **fields: Any) -> HealthCheck:
    timings: dict[str, Any] = {"interval_seconds": 1, "timeout_seconds": 2, "grace_period_seconds": 0}
    return HealthCheck(protocol=protocol, **timings, **fields)  # type: ignore[arg-type]


async def test_http_check_reports_alive(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 200)
    try:
        probe.watch("t1", "127.0.0.1", [server.port or 0], [quick("HTTP", path="/health")], started_at=0.0)
        await until(lambda: results, timeout=5)
        assert results[0] == ("t1", 0, HealthResult(alive=True, first_success=100.0, last_success=100.0))
    finally:
        await server.close()


async def test_http_failures_accumulate(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 503)
    try:
        probe.watch("t1", "127.0.0.1", [server.port or 0], [quick("HTTP")], started_at=0.0)
        await until(lambda: len(results) >= 2, timeout=5)
        first, second = results[0][2], results[1][2]
        assert not first.alive and first.consecutive_failures == 1 and first.last_failure_cause == "HTTP status 503"
        assert second.consecutive_failures == 2
    finally:
        await server.close()


async def test_tcp_check_passes_on_connect_and_fails_on_refusal(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    listener = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    open_port = listener.sockets[0].getsockname()[1]
    closed_port = _unused_port()
    try:
        probe.watch("up", "127.0.0.1", [open_port], [quick("TCP")], started_at=0.0)
        probe.watch("down", "127.0.0.1", [closed_port], [quick("TCP")], started_at=0.0)
        await until(lambda: {task_id for task_id, _, _ in results} == {"up", "down"}, timeout=5)
        by_task = {task_id: result for task_id, _, result in results}
        assert by_task["up"].alive
        assert not by_task["down"].alive and by_task["down"].consecutive_failures == 1
    finally:
        listener.close()
        await listener.wait_closed()


async def test_only_marathon_side_checks_are_probed(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 200)
    try:
        checks = [quick("MESOS_HTTP"), quick("COMMAND"), quick("HTTP"), quick("MESOS_TCP")]
        probe.watch("t1", "127.0.0.1", [server.port or 0], checks, started_at=0.0)
        assert probe.snapshot().loops == 1
        await until(lambda: results, timeout=5)
        assert results[0][1] == 2  # the index of the HTTP check in the app's list
    finally:
        await server.close()


async def test_unwatch_stops_the_reports(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    server = await serve(lambda: 200)
    try:
        probe.watch("t1", "127.0.0.1", [server.port or 0], [quick("HTTP")], started_at=0.0)
        await until(lambda: results, timeout=5)
        probe.unwatch("t1")
        assert probe.snapshot().tasks == 0
        count = len(results)
        probe.watch("t2", "127.0.0.1", [server.port or 0], [quick("HTTP")], started_at=0.0)
        # By the time t2 had two probes (one interval), t1 would have had another one had it not stopped.
        await until(lambda: sum(1 for task_id, _, _ in results if task_id == "t2") >= 2, timeout=5)
        assert sum(1 for task_id, _, _ in results if task_id == "t1") == count
    finally:
        await server.close()


async def test_a_missing_port_index_is_a_failure(probe_and_results: tuple[HealthProbe, Results]) -> None:
    probe, results = probe_and_results
    probe.watch("t1", "127.0.0.1", [], [quick("TCP", port_index=1)], started_at=0.0)
    await until(lambda: results, timeout=5)
    result = results[0][2]
    assert not result.alive and result.last_failure_cause is not None and "port index 1" in result.last_failure_cause


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
