"""The URI fetcher: HTTP from a loopback server and local files into a sandbox, extraction, refusals, cache."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from butte.containerizer.fetcher import Fetcher, FetchError
from butte.containerizer.fetcher_cache import FetcherCache, parse_bytes
from butte.containerizer.launcher import UserIds
from butte.core.errors import ValidationError
from butte.wire.mesos import CommandURI


class FileServer:
    """Serves named blobs on 127.0.0.1 and counts requests per name."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: dict[str, int] = {}
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get("/{name:.+}", self.serve)

    async def serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[name] = self.requests.get(name, 0) + 1
        if name not in self.files:
            return web.Response(status=404, reason="Not Found")
        return web.Response(body=self.files[name])


@pytest.fixture
async def server() -> AsyncIterator[FileServer]:
    files = FileServer()
    running = TestServer(files.app, host="127.0.0.1")
    await running.start_server()
    files.url = f"http://127.0.0.1:{running.port}"
    yield files
    await running.close()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz", links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_fetcher(tmp_path: Path, capacity: int = 1 << 20) -> Fetcher:
    return Fetcher(FetcherCache(str(tmp_path / "cache"), capacity))


def sandbox(tmp_path: Path, name: str = "sandbox") -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


ME = UserIds("someone", os.getuid(), os.getgid(), ())


async def test_http_file_lands_under_its_basename(server: FileServer, tmp_path: Path) -> None:
    server.files["dir/data.txt"] = b"hello"
    box = sandbox(tmp_path)
    await make_fetcher(tmp_path).fetch([CommandURI(value=f"{server.url}/dir/data.txt")], str(box), None)
    assert (box / "data.txt").read_bytes() == b"hello"
    assert sorted(os.listdir(box)) == ["data.txt"]  # no temporary left behind


async def test_executable_and_output_file(server: FileServer, tmp_path: Path) -> None:
    server.files["run.tar.gz"] = tar_bytes({"x": b"1"})
    box = sandbox(tmp_path)
    uri = CommandURI(value=f"{server.url}/run.tar.gz", executable=True, output_file="bin/tool")
    await make_fetcher(tmp_path).fetch([uri], str(box), None)
    tool = box / "bin" / "tool"
    assert os.access(tool, os.X_OK)
    assert not (box / "x").exists()  # executable means: not extracted


@pytest.mark.parametrize(
    ("suffix", "mode"), [("tar.gz", "w:gz"), ("tgz", "w:gz"), ("tar.bz2", "w:bz2"), ("tar.xz", "w:xz"), ("tar", "w")]
)
async def test_tarballs_are_extracted_into_the_sandbox(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = tmp_path / f"app.{suffix}"
    archive.write_bytes(tar_bytes({"app/run.sh": b"#!/bin/sh\necho hi\n", "app/conf": b"c"}, mode))
    box = sandbox(tmp_path)
    await make_fetcher(tmp_path).fetch([CommandURI(value=f"file://{archive}")], str(box), None)
    assert (box / "app" / "conf").read_bytes() == b"c"
    assert os.access(box / "app" / "run.sh", os.X_OK)
    assert (box / f"app.{suffix}").exists()  # the archive stays, as with Mesos


async def test_zip_and_gz(tmp_path: Path) -> None:
    (tmp_path / "bundle.zip").write_bytes(zip_bytes({"z/one": b"1"}))
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"plain"))
    (tmp_path / "raw.gz").write_bytes(gzip.compress(b"kept"))
    box = sandbox(tmp_path)
    uris = [
        CommandURI(value=str(tmp_path / "bundle.zip")),
        CommandURI(value=str(tmp_path / "notes.txt.gz")),
        CommandURI(value=str(tmp_path / "raw.gz"), extract=False),
    ]
    await make_fetcher(tmp_path).fetch(uris, str(box), None)
    assert (box / "z" / "one").read_bytes() == b"1"
    assert (box / "notes.txt").read_bytes() == b"plain"
    assert not (box / "raw").exists() and (box / "raw.gz").exists()


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../escaped": b"x"}, None),
        ({"/abs/escaped": b"x"}, None),
        ({"ok/../../escaped": b"x"}, None),
        ({}, {"link": "/etc"}),
        ({}, {"sub/link": "../../.."}),
    ],
)
async def test_archive_members_escaping_the_sandbox_are_refused(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None
) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_bytes(members, links=links))
    box = sandbox(tmp_path)
    with pytest.raises(FetchError, match=rf"Failed to fetch '{archive}'.*outside the sandbox"):
        await make_fetcher(tmp_path).fetch([CommandURI(value=str(archive))], str(box), None)
    assert not (tmp_path / "escaped").exists()
    assert sorted(os.listdir(box)) == ["evil.tar.gz"]


async def test_zip_member_escaping_the_sandbox_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.zip").write_bytes(zip_bytes({"../escaped": b"x"}))
    box = sandbox(tmp_path)
    with pytest.raises(FetchError, match="outside the sandbox"):
        await make_fetcher(tmp_path).fetch([CommandURI(value=str(tmp_path / "evil.zip"))], str(box), None)
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/no/such/file.txt", "no such file"),
        ("relative/file.txt", "relative path"),
        ("ftp://example.invalid/file", "unsupported URI scheme 'ftp'"),
    ],
)
async def test_local_and_unsupported_failures_name_the_uri(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(FetchError, match=rf"Failed to fetch '{value}': .*{message}"):
        await make_fetcher(tmp_path).fetch([CommandURI(value=value)], str(sandbox(tmp_path)), None)


async def test_http_error_and_escaping_output_file(server: FileServer, tmp_path: Path) -> None:
    box = sandbox(tmp_path)
    with pytest.raises(FetchError, match=r"/missing': HTTP 404 Not Found"):
        await make_fetcher(tmp_path).fetch([CommandURI(value=f"{server.url}/missing")], str(box), None)
    assert os.listdir(box) == []
    uri = CommandURI(value=f"{server.url}/missing", output_file="../out")
    with pytest.raises(FetchError, match="outside the sandbox"):
        await make_fetcher(tmp_path).fetch([uri], str(box), None)


async def test_cached_uri_is_downloaded_once_per_user(server: FileServer, tmp_path: Path) -> None:
    server.files["pkg.tgz"] = tar_bytes({"pkg/file": b"v1"})
    fetcher = make_fetcher(tmp_path)
    uri = CommandURI(value=f"{server.url}/pkg.tgz", cache=True)
    first, second, third = sandbox(tmp_path, "a"), sandbox(tmp_path, "b"), sandbox(tmp_path, "c")
    await fetcher.fetch([uri], str(first), ME)
    await fetcher.fetch([uri], str(second), ME)
    assert server.requests["pkg.tgz"] == 1
    assert (second / "pkg" / "file").read_bytes() == b"v1"
    other_user = UserIds("other", os.getuid(), os.getgid(), ())
    await fetcher.fetch([uri], str(third), other_user)  # the cache is keyed by URI and user
    assert server.requests["pkg.tgz"] == 2
    snapshot = fetcher.cache.snapshot()
    assert (snapshot.entries, snapshot.hits, snapshot.misses) == (2, 1, 2)


async def test_concurrent_fetches_of_one_cached_uri_download_it_once(server: FileServer, tmp_path: Path) -> None:
    server.files["big"] = b"b" * 300_000
    fetcher = make_fetcher(tmp_path)
    uri = CommandURI(value=f"{server.url}/big", cache=True)
    boxes = [sandbox(tmp_path, f"s{i}") for i in range(4)]
    await asyncio.gather(*(fetcher.fetch([uri], str(box), None) for box in boxes))
    assert server.requests["big"] == 1
    assert all((box / "big").stat().st_size == 300_000 for box in boxes)


async def test_cache_evicts_least_recently_used(server: FileServer, tmp_path: Path) -> None:
    for name in ("one", "two", "three"):
        server.files[name] = name.encode() * 100  # 300-500 bytes each
    fetcher = make_fetcher(tmp_path, capacity=1000)
    for index, name in enumerate(("one", "two", "one", "three")):  # "two" is now the least recently used
        box = sandbox(tmp_path, f"box{index}")
        await fetcher.fetch([CommandURI(value=f"{server.url}/{name}", cache=True)], str(box), None)
    cached = sorted(name.split("-", 1)[1] for name in os.listdir(tmp_path / "cache"))
    assert cached == ["one", "three"]
    assert fetcher.cache.snapshot().evictions == 1
    assert fetcher.cache.snapshot().size_bytes <= 1000


async def test_file_bigger_than_the_cache_is_fetched_uncached(server: FileServer, tmp_path: Path) -> None:
    server.files["huge"] = b"h" * 5000
    fetcher = make_fetcher(tmp_path, capacity=1000)
    box = sandbox(tmp_path)
    await fetcher.fetch([CommandURI(value=f"{server.url}/huge", cache=True)], str(box), None)
    assert (box / "huge").stat().st_size == 5000
    assert os.listdir(tmp_path / "cache") == []


async def test_failed_cached_fetch_leaves_nothing_in_the_cache(server: FileServer, tmp_path: Path) -> None:
    fetcher = make_fetcher(tmp_path)
    box = sandbox(tmp_path)
    with pytest.raises(FetchError, match="HTTP 404"):
        await fetcher.fetch([CommandURI(value=f"{server.url}/absent.tgz", cache=True)], str(box), None)
    assert os.listdir(tmp_path / "cache") == [] and os.listdir(box) == []
    # A corrupt archive: the download is cached (it is what the URI holds), extraction fails and says so.
    server.files["bad.tgz"] = b"not a tarball"
    with pytest.raises(FetchError, match=r"bad\.tgz"):
        await fetcher.fetch([CommandURI(value=f"{server.url}/bad.tgz", cache=True)], str(box), None)
    assert not [name for name in os.listdir(tmp_path / "cache") if name.startswith(".part-")]


async def test_cache_index_survives_a_restart_and_drops_partial_files(server: FileServer, tmp_path: Path) -> None:
    server.files["keep"] = b"k"
    await make_fetcher(tmp_path).fetch(
        [CommandURI(value=f"{server.url}/keep", cache=True)], str(sandbox(tmp_path, "a")), None
    )
    (tmp_path / "cache" / ".part-deadbeef").write_bytes(b"half")
    fetcher = make_fetcher(tmp_path)
    await fetcher.fetch([CommandURI(value=f"{server.url}/keep", cache=True)], str(sandbox(tmp_path, "b")), None)
    assert server.requests["keep"] == 1
    assert not (tmp_path / "cache" / ".part-deadbeef").exists()


def test_parse_bytes() -> None:
    assert parse_bytes("2GB") == 2 * 1024**3
    assert parse_bytes("512MB") == 512 * 1024**2
    assert parse_bytes("100KB") == 102400
    assert parse_bytes("1024") == 1024 and parse_bytes("7B") == 7
    with pytest.raises(ValidationError):
        parse_bytes("lots")
