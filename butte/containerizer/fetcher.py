"""The URI fetcher: ``CommandInfo.uris`` into a sandbox before the task starts (Mesos's fetcher).

Each URI (``http(s)://``, ``file://`` or an absolute local path) lands in the sandbox under ``output_file``
or its basename. Then, as Mesos does: ``executable`` makes it executable and skips extraction; else, with
``extract`` (the default), archives are unpacked beside it (tar, tar.gz/tgz, tar.bz2/tbz2, tar.xz/txz, zip)
and a plain ``.gz`` is decompressed to the name without ``.gz``; the archive itself stays. ``cache`` goes
through :class:`~butte.containerizer.fetcher_cache.FetcherCache`. Archive members that would land outside
the sandbox (``..``, absolute paths, links pointing out) are refused. Downloads run on the event loop with
aiohttp; file copies, writes and extraction run on threads, so the loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Sequence
from typing import final
from urllib.parse import unquote, urlsplit

import aiohttp

from butte.containerizer.fetcher_cache import FetcherCache
from butte.containerizer.launcher import LaunchError, UserIds
from butte.wire.mesos import CommandURI

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
CHUNK_BYTES = 1024 * 1024


class FetchError(LaunchError):
    """A URI could not be fetched into the sandbox; the message names the URI and the reason."""


class UnsafeArchive(Exception):
    """An archive member would be written outside the sandbox."""


# What fetching a URI may raise; each becomes a FetchError naming the URI.
FETCH_FAILURES: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,
    UnsafeArchive,
    tarfile.TarError,
    zipfile.BadZipFile,
    aiohttp.ClientError,
)


@final
class Fetcher:
    """Fetches a task's URIs into its sandbox, through the cache when a URI asks for it."""

    def __init__(self, cache: FetcherCache, connect_timeout_s: float = 30.0) -> None:
        self.cache = cache
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=60.0)

    async def fetch(self, uris: Sequence[CommandURI], sandbox: str, user: UserIds | None) -> None:
        """Fetch every URI into ``sandbox`` in order, owned by ``user`` when one is given.

        Raises:
            FetchError: a URI could not be fetched, copied or extracted; names the URI.
        """
        for uri in uris:
            try:
                await self._fetch_one(uri, sandbox, user)
            except FetchError:
                raise
            except FETCH_FAILURES as exc:
                raise FetchError(f"Failed to fetch '{uri.value}': {_describe(exc)}") from exc

    async def _fetch_one(self, uri: CommandURI, sandbox: str, user: UserIds | None) -> None:
        destination = output_path(uri, sandbox)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, os.makedirs, os.path.dirname(destination), 0o755, True)
        if uri.cache:
            user_name = user.name if user is not None else ""
            basename = os.path.basename(destination)
            async with self.cache.obtain(
                user_name, uri.value, basename, lambda path: self._download(uri, path)
            ) as held:
                await loop.run_in_executor(None, copy_whole, held, destination)
        else:
            await self._download_to(uri, destination)
        await loop.run_in_executor(None, finish_file, uri, destination, user)
        log.info("Fetched %s into %s", uri.value, destination)

    async def _download_to(self, uri: CommandURI, destination: str) -> None:
        partial = f"{destination}.fetching"
        try:
            await self._download(uri, partial)
            os.replace(partial, destination)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise

    async def _download(self, uri: CommandURI, path: str) -> None:
        scheme = urlsplit(uri.value).scheme.lower()
        loop = asyncio.get_running_loop()
        if scheme in ("http", "https"):
            await self._download_http(uri.value, path)
        elif scheme == "file" or (not scheme and uri.value.startswith("/")):
            await loop.run_in_executor(None, shutil.copyfile, local_path(uri.value), path)
        elif not scheme:
            raise ValueError("a relative path needs a frameworks home, and none is set")
        else:
            raise ValueError(f"unsupported URI scheme '{scheme}'")

    async def _download_http(self, url: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise ValueError(f"HTTP {response.status} {response.reason or ''}".rstrip())
            handle = await loop.run_in_executor(None, open, path, "wb")
            try:
                buffered = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    buffered += chunk
                    if len(buffered) >= CHUNK_BYTES:
                        await loop.run_in_executor(None, handle.write, bytes(buffered))
                        buffered.clear()
                await loop.run_in_executor(None, handle.write, bytes(buffered))
            finally:
                await loop.run_in_executor(None, handle.close)


def output_path(uri: CommandURI, sandbox: str) -> str:
    """Where in the sandbox ``uri`` goes: ``output_file``, else the basename of its path.

    Raises:
        ValueError: the name is empty, absolute, or leaves the sandbox.
    """
    name = uri.output_file or os.path.basename(unquote(urlsplit(uri.value).path))
    if not name:
        raise ValueError("cannot tell a file name from the URI; set output_file")
    if os.path.isabs(name) or not _inside(sandbox, os.path.join(sandbox, name)):
        raise ValueError(f"output file '{name}' is outside the sandbox")
    return os.path.join(sandbox, name)


def copy_whole(source: str, destination: str) -> None:
    """Copy ``source`` to ``destination`` under a temporary name, renamed once complete.

    Raises:
        OSError: reading or writing failed (nothing is left at ``destination``).
    """
    partial = f"{destination}.fetching"
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, destination)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def local_path(value: str) -> str:
    """The file a ``file://`` URI or a plain absolute path names."""
    parts = urlsplit(value)
    return unquote(parts.path) if parts.scheme.lower() == "file" else value


def finish_file(uri: CommandURI, path: str, user: UserIds | None) -> None:
    """Make the fetched file executable, or extract it, then give it (and what came out) to ``user``.

    Raises:
        OSError, UnsafeArchive, tarfile.TarError, zipfile.BadZipFile: extraction failed.
    """
    created: list[str] = [path]
    if uri.executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    elif uri.extract:
        created += extract(path, os.path.dirname(path))
    if user is not None and os.geteuid() == 0:
        for item in created:  # Mesos runs its fetcher as the task's user, so the task owns what it fetched
            os.lchown(item, user.uid, user.gid)


def extract(path: str, into: str) -> list[str]:
    """Unpack ``path`` into ``into`` when its name says it is an archive; the paths written.

    Raises:
        UnsafeArchive: a member would land outside ``into``. OSError, tarfile.TarError, zipfile.BadZipFile.
    """
    name = path.lower()
    if name.endswith(TAR_SUFFIXES):
        return _extract_tar(path, into)
    if name.endswith(".zip"):
        return _extract_zip(path, into)
    if name.endswith(".gz"):
        return [_gunzip(path)]
    return []


def _extract_tar(path: str, into: str) -> list[str]:
    with tarfile.open(path, "r:*") as archive:
        members = archive.getmembers()
        for member in members:
            _check_member(into, member.name)
            if member.issym():
                _check_link(into, os.path.join(os.path.dirname(member.name), member.linkname), member.name)
            elif member.islnk():
                _check_link(into, member.linkname, member.name)
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"archive member '{member.name}' is a device or FIFO")
        # The "data" filter re-checks what we did and drops set-uid bits and foreign owners.
        archive.extractall(into, members=members, filter="data")
    return [os.path.join(into, member.name) for member in members]


def _extract_zip(path: str, into: str) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:
            _check_member(into, info.filename)
        written = []
        for info in infos:
            target = archive.extract(info, into)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)  # unzip keeps permissions; zipfile does not
            written.append(target)
    return written


def _gunzip(path: str) -> str:
    target = path[: -len(".gz")]
    partial = f"{target}.fetching"
    try:
        with gzip.open(path, "rb") as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK_BYTES)
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return target


def _check_member(into: str, name: str) -> None:
    if os.path.isabs(name) or not _inside(into, os.path.join(into, name)):
        raise UnsafeArchive(f"archive member '{name}' would be written outside the sandbox")


def _check_link(into: str, target: str, name: str) -> None:
    if os.path.isabs(target) or not _inside(into, os.path.join(into, target)):
        raise UnsafeArchive(f"archive member '{name}' links to '{target}', outside the sandbox")


def _inside(root: str, path: str) -> bool:
    root = os.path.normpath(root)
    return os.path.commonpath([root, os.path.normpath(path)]) == root


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no such file '{exc.filename}'"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.strerror}: '{exc.filename}'"
    return str(exc) or type(exc).__name__
