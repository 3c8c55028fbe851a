"""``/files`` over sandboxes: Mesos's virtual paths, ``offset=-1``, and paths that try to leave the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from butte.agent.api.files import add_files_routes

AGENT_ID = "a1"


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Path]]:
    runs = tmp_path / "slaves" / AGENT_ID / "frameworks" / "f1" / "executors" / "e1" / "runs"
    sandbox = runs / "c1"
    sandbox.mkdir(parents=True)
    (runs / "latest").symlink_to("c1")
    (sandbox / "stdout").write_text("hello sandbox")
    (sandbox / "escape").symlink_to("/etc/hostname")
    (tmp_path / "secret").write_text("outside")
    app = web.Application()
    add_files_routes(app, str(tmp_path), lambda: AGENT_ID)
    async with TestClient(TestServer(app)) as client:
        yield client, sandbox


async def test_virtual_latest_path_reads_the_sandbox(files: tuple[TestClient, Path]) -> None:
    client, _ = files
    response = await client.get(
        "/files/read", params={"path": "/frameworks/f1/executors/e1/runs/latest/stdout", "offset": "0"}
    )
    assert response.status == 200
    assert await response.json() == {"data": "hello sandbox", "offset": 0}


async def test_real_path_and_offset_minus_one_gives_the_size(files: tuple[TestClient, Path]) -> None:
    client, sandbox = files
    response = await client.get("/files/read", params={"path": str(sandbox / "stdout"), "offset": "-1"})
    assert await response.json() == {"data": "", "offset": len("hello sandbox")}
    chunk = await client.get("/files/read", params={"path": str(sandbox / "stdout"), "offset": "6", "length": "3"})
    assert (await chunk.json())["data"] == "san"


async def test_browse_and_download(files: tuple[TestClient, Path]) -> None:
    client, sandbox = files
    listing = await (
        await client.get("/files/browse", params={"path": "/frameworks/f1/executors/e1/runs/latest"})
    ).json()
    assert {Path(entry["path"]).name for entry in listing} == {"stdout"}  # the escaping link is not listed as ours
    download = await client.get("/files/download", params={"path": str(sandbox / "stdout")})
    assert await download.read() == b"hello sandbox"


@pytest.mark.parametrize(
    "path",
    [
        "/frameworks/f1/executors/e1/runs/latest/../../../../../../../secret",
        "{sandbox}/../../../../../../../secret",
        "{sandbox}/escape",
        "/etc/hostname",
    ],
)
async def test_paths_leaving_the_sandboxes_are_not_found(files: tuple[TestClient, Path], path: str) -> None:
    client, sandbox = files
    for endpoint in ("read", "browse", "download"):
        response = await client.get(f"/files/{endpoint}", params={"path": path.format(sandbox=sandbox), "offset": "0"})
        assert response.status in (403, 404), endpoint
