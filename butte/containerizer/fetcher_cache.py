"""The fetcher's cache (``--fetcher_cache_dir``, ``--fetcher_cache_size``): downloads that later tasks reuse.

An entry is keyed by URI and user, as in Mesos, and stored as ``<sha256 of both>-<basename>`` in the cache
directory. A download goes to a ``.part-`` name first and is renamed into place only once complete, so a
failed or interrupted fetch never leaves a half-written entry. When a new entry does not fit, the least
recently used entries not being copied out right now are evicted; a file larger than the whole cache is
handed to the task without being cached. One download per key at a time: other tasks wanting the same URI
wait for it. The index is rebuilt from the directory at start, so the cache outlives an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import final

from butte.core.errors import ValidationError

log = logging.getLogger(__name__)

PART_PREFIX = ".part-"
DEFAULT_CACHE_SIZE_BYTES = 2 * 1024**3  # Mesos's --fetcher_cache_size default, 2GB

_BYTE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$", re.IGNORECASE)


def parse_bytes(text: str, field: str = "bytes") -> int:
    """A stout byte size (``2GB``, ``512MB``, ``100KB``, ``1024B``, or a bare number of bytes).

    Raises:
        ValidationError: the text is not a number with one of B, KB, MB, GB, TB.
    """
    match = _BYTES.match(text)
    if match is None:
        raise ValidationError(field, f"not a byte size: {text!r}")
    number, unit = match.groups()
    return int(float(number) * _BYTE_UNITS[(unit or "B").upper()])


def cache_key(user: str, uri: str) -> str:
    """The name part an entry of ``uri`` fetched for ``user`` is stored under."""
    return hashlib.sha256(f"{user}\0{uri}".encode()).hexdigest()[:32]


@final
@dataclass(slots=True)
class CacheEntry:
    """One cached file."""

    path: str
    size: int
    last_used: int  # a use counter, not a clock: only the order matters
    pins: int = 0


@final
@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """The cache right now."""

    entries: int
    size_bytes: int
    capacity_bytes: int
    hits: int
    misses: int
    evictions: int


Download = Callable[[str], Awaitable[None]]  # writes the whole file at the given path


@final
class FetcherCache:
    """Cached downloads under one directory, bounded by a size, evicted least recently used first."""

    def __init__(self, directory: str, capacity_bytes: int) -> None:
        self.directory = directory
        self.capacity_bytes = capacity_bytes
        self._entries: dict[str, CacheEntry] = {}
        self._downloading: dict[str, asyncio.Future[None]] = {}
        self._uses = 0
        self._hits = self._misses = self._evictions = 0
        self._loading: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def obtain(self, user: str, uri: str, basename: str, download: Download) -> AsyncIterator[str]:
        """The path of ``uri``'s cached file, downloaded first on a miss; kept while the context is open.

        Raises:
            Whatever ``download`` raises (the partial file is removed first).
        """
        if self._loading is None:  # once, shared: a second scan could delete another fetch's partial file
            self._loading = asyncio.get_running_loop().run_in_executor(None, self._load)
        await asyncio.shield(self._loading)
        key = cache_key(user, uri)
        while (pending := self._downloading.get(key)) is not None:
            await asyncio.shield(pending)
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            path, entry = await self._download(key, basename, download)
            if entry is None:  # too big to cache: the caller gets it once, then it goes
                try:
                    yield path
                finally:
                    _remove(path)
                return
        else:
            self._hits += 1
        self._uses += 1
        entry.last_used = self._uses
        entry.pins += 1
        try:
            yield entry.path
        finally:
            entry.pins -= 1

    def snapshot(self) -> CacheSnapshot:
        """Entries, bytes held, and counters."""
        size = sum(entry.size for entry in self._entries.values())
        return CacheSnapshot(len(self._entries), size, self.capacity_bytes, self._hits, self._misses, self._evictions)

    async def _download(self, key: str, basename: str, download: Download) -> tuple[str, CacheEntry | None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._downloading[key] = done
        partial = os.path.join(self.directory, f"{PART_PREFIX}{secrets.token_hex(8)}")
        try:
            await download(partial)
            size = os.stat(partial).st_size
            if size > self.capacity_bytes:
                log.info("Not caching %s: %d bytes is more than the cache holds", basename, size)
                return partial, None
            self._make_room(size)
            final_path = os.path.join(self.directory, f"{key}-{basename}")
            os.replace(partial, final_path)
            entry = self._entries[key] = CacheEntry(final_path, size, self._uses)
            return final_path, entry
        except BaseException:
            _remove(partial)
            raise
        finally:
            del self._downloading[key]
            done.set_result(None)

    def _make_room(self, size: int) -> None:
        held = sum(entry.size for entry in self._entries.values())
        for key, entry in sorted(self._entries.items(), key=lambda item: item[1].last_used):
            if held + size <= self.capacity_bytes:
                return
            if entry.pins:
                continue  # a task is copying it out right now
            _remove(entry.path)
            del self._entries[key]
            held -= entry.size
            self._evictions += 1
            log.info("Evicted %s from the fetcher cache", entry.path)

    def _load(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        with os.scandir(self.directory) as found:
            files = sorted((item for item in found if item.is_file()), key=lambda item: item.stat().st_mtime)
        for item in files:
            if item.name.startswith(PART_PREFIX):
                _remove(item.path)  # left by a fetch that never finished
                continue
            key, sep, _ = item.name.partition("-")
            if sep:
                self._uses += 1
                self._entries[key] = CacheEntry(item.path, item.stat().st_size, self._uses)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
