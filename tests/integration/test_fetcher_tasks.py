"""Command tasks whose URIs the agent fetches before it starts them: from a loopback HTTP server and local files."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_agent_service import FRAMEWORK_ID, FakeMaster, agent, make_config, master, run_task, sandbox_of

from butte.agent.service import Agent
from butte.testing.wait import until
from butte.wire.base import ID
from butte.wire.mesos import CommandInfo, CommandURI, ExecutorInfo, TaskInfo

__all__ = ["agent", "master"]  # fixtures pytest finds by name


def app_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        script = b"#!/bin/sh\necho fetched-and-ran\n"
        info = tarfile.TarInfo("app/run.sh")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))
    return buffer.getvalue()


@pytest.fixture
async def files() -> AsyncIterator[tuple[str, dict[str, int]]]:
    served = {"app.tar.gz": app_tarball(), "tool": b"#!/bin/sh\necho tool-ran\n"}
    hits: dict[str, int] = {}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        return web.Response(body=served[name]) if name in served else web.Response(status=404, reason="Not Found")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", hits
    await server.close()


@pytest.fixture
async def cached_agent(master: tuple[FakeMaster, str], tmp_path: Path) -> AsyncIterator[Agent]:
    _, address = master
    config = make_config(address, tmp_path / "work", fetcher_cache_dir=str(tmp_path / "cache"))
    running = Agent(config)
    await running.start()
    await until(lambda: running.agent_info.id is not None, timeout=5)
    yield running
    await running.stop()


def uri_task(task_id: str, command: str, uris: list[CommandURI]) -> TaskInfo:
    info = TaskInfo(name=task_id, task_id=ID(value=task_id), agent_id=ID(value="M-S0"))
    info.command = CommandInfo(value=command, uris=uris)
    return info


async def test_task_runs_what_was_fetched_and_extracted(
    master: tuple[FakeMaster, str], cached_agent: Agent, files: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    fake, _ = master
    url, hits = files
    local = tmp_path / "settings.conf"
    local.write_text("x=1\n")
    uris = (
        CommandURI(value=f"{url}/app.tar.gz", cache=True),
        CommandURI(value=f"{url}/tool", executable=True, output_file="bin/tool"),
        CommandURI(value=f"file://{local}"),
    )
    script = "./app/run.sh && ./bin/tool && cat settings.conf"
    fake.send(run_task(uri_task("f1", script, list(uris))))
    fake.send(run_task(uri_task("f2", script, list(uris))))
    await until(lambda: fake.states("f1")[-1:] == fake.states("f2")[-1:] == ["TASK_FINISHED"], timeout=15)
    for task_id in ("f1", "f2"):
        stdout = (sandbox_of(cached_agent, task_id) / "stdout").read_text()
        assert stdout == "fetched-and-ran\ntool-ran\nx=1\n"
    assert hits["app.tar.gz"] == 1  # the second task took it from the cache
    assert hits["tool"] == 2  # not cached: fetched for each task
    assert len(os.listdir(tmp_path / "cache")) == 1


async def test_failed_fetch_fails_the_task_naming_the_uri(
    master: tuple[FakeMaster, str], cached_agent: Agent, files: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    fake, _ = master
    url, _ = files
    missing = CommandURI(value=f"{url}/missing.tgz", cache=True)
    fake.send(run_task(uri_task("bad", "touch ran", [missing])))
    await until(lambda: fake.states("bad")[-1:] == ["TASK_FAILED"], timeout=10)
    final = fake.updates[-1]
    assert final.reason == "REASON_CONTAINER_LAUNCH_FAILED" and final.source == "SOURCE_AGENT"
    assert final.message == f"Failed to fetch '{url}/missing.tgz': HTTP 404 Not Found"
    assert not (sandbox_of(cached_agent, "bad") / "ran").exists()
    assert os.listdir(tmp_path / "cache") == []


async def test_default_cache_dir_is_in_the_work_dir(
    master: tuple[FakeMaster, str], agent: Agent, files: tuple[str, dict[str, int]]
) -> None:
    fake, _ = master
    url, _ = files
    uri = CommandURI(value=f"{url}/tool", cache=True, executable=True)
    fake.send(run_task(uri_task("d1", "./tool", [uri])))
    await until(lambda: fake.states("d1")[-1:] == ["TASK_FINISHED"], timeout=10)
    cached = os.listdir(Path(agent.config.work_dir) / "fetch")
    assert len(cached) == 1 and cached[0].endswith("-tool")


def executor_task(task_id: str, command: str, uris: list[CommandURI]) -> TaskInfo:
    """A task for a custom executor whose command needs the fetched URIs."""
    info = TaskInfo(name=task_id, task_id=ID(value=task_id), agent_id=ID(value="M-S0"))
    info.executor = ExecutorInfo(executor_id=ID(value=f"exec-{task_id}"), command=CommandInfo(value=command, uris=uris))
    return info


async def test_custom_executor_runs_what_was_fetched(
    master: tuple[FakeMaster, str], agent: Agent, files: tuple[str, dict[str, int]]
) -> None:
    fake, _ = master
    url, hits = files
    uri = CommandURI(value=f"{url}/tool", executable=True, output_file="bin/tool")
    # The "executor" only proves it ran from the fetched file; it never subscribes, so its task fails after.
    fake.send(run_task(executor_task("e1", "./bin/tool > ran.txt", [uri])))
    sandbox = Path(agent.config.work_dir) / f"slaves/M-S0/frameworks/{FRAMEWORK_ID}/executors/exec-e1/runs/latest"
    await until(
        lambda: (sandbox / "ran.txt").exists() and (sandbox / "ran.txt").read_text() == "tool-ran\n", timeout=10
    )
    assert hits["tool"] == 1


async def test_custom_executor_fetch_failure_fails_its_tasks(
    master: tuple[FakeMaster, str], agent: Agent, files: tuple[str, dict[str, int]]
) -> None:
    fake, _ = master
    url, _ = files
    fake.send(run_task(executor_task("e2", "true", [CommandURI(value=f"{url}/missing.tgz")])))
    await until(lambda: fake.states("e2")[-1:] == ["TASK_FAILED"], timeout=10)
    final = fake.updates[-1]
    assert final.reason == "REASON_CONTAINER_LAUNCH_FAILED"
    assert final.message is not None and f"Failed to fetch '{url}/missing.tgz'" in final.message
