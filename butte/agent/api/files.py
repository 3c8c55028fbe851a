"""``/files/browse``, ``/files/read`` and ``/files/download``: sandboxes over HTTP, as Mesos serves them.

Only sandboxes are reachable: paths under ``<work_dir>/slaves`` (symlinks resolved first, so ``latest``
works and nothing escapes), plus Mesos's virtual ``/frameworks/<fid>/executors/<eid>/runs/latest`` that
stands for this agent's copy of that directory (reference §4.5).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable

from aiohttp import web

# Mesos caps one read at 16 pages.
MAX_READ_BYTES = 16 * 4096

AgentId = Callable[[], str]


def add_files_routes(app: web.Application, work_dir: str, agent_id: AgentId) -> None:
    """Serve the three ``/files`` endpoints over the sandboxes of ``work_dir``."""
    files = SandboxFiles(work_dir, agent_id)
    app.router.add_get("/files/browse", files.browse)
    app.router.add_get("/files/read", files.read)
    app.router.add_get("/files/download", files.download)


class SandboxFiles:
    """The handlers; one instance per agent."""

    def __init__(self, work_dir: str, agent_id: AgentId) -> None:
        self._root = os.path.realpath(os.path.join(work_dir, "slaves"))
        self._agent_id = agent_id

    async def browse(self, request: web.Request) -> web.Response:
        """The entries of a directory (or the one file named)."""
        path = self._resolve(request)
        if os.path.isdir(path):
            names = sorted(os.listdir(path))
            # A link that leads out of the sandboxes is not listed: describing it would stat what it points at.
            entries = [_describe(os.path.join(path, n)) for n in names if self._inside(os.path.join(path, n))]
        else:
            entries = [_describe(path)]
        return web.json_response(entries)

    async def read(self, request: web.Request) -> web.Response:
        """A chunk of a file: ``{"data", "offset"}``; no offset (or -1) gives the file's size."""
        path = self._resolve(request)
        if os.path.isdir(path):
            raise web.HTTPBadRequest(text="Cannot read a directory")
        offset = _number(request, "offset", default=-1, allow_minus_one=True)
        length = _number(request, "length", default=MAX_READ_BYTES, allow_minus_one=True)
        size = os.path.getsize(path)
        if offset == -1:
            return web.json_response({"data": "", "offset": size})
        length = MAX_READ_BYTES if length == -1 else min(length, MAX_READ_BYTES)
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return web.json_response({"data": data.decode("utf-8", errors="replace"), "offset": offset})

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The raw bytes of a file, as an attachment."""
        path = self._resolve(request)
        if os.path.isdir(path):
            raise web.HTTPBadRequest(text="Cannot download a directory")
        disposition = f"attachment; filename={os.path.basename(path)}"
        return web.FileResponse(path, headers={"Content-Disposition": disposition})

    def _resolve(self, request: web.Request) -> str:
        requested = request.query.get("path")
        if not requested:
            raise web.HTTPBadRequest(text="Expecting 'path' in query parameters")
        if requested.startswith("/frameworks/"):
            requested = os.path.join(self._root, self._agent_id(), requested.lstrip("/"))
        path = os.path.realpath(requested)
        if not self._inside(path) or not os.path.exists(path):
            raise web.HTTPNotFound(text=f"'{request.query['path']}' not found")
        return path

    def _inside(self, path: str) -> bool:
        """Whether ``path``, symlinks resolved, is under the sandboxes' root."""
        return os.path.commonpath([os.path.realpath(path), self._root]) == self._root


def _number(request: web.Request, name: str, *, default: int, allow_minus_one: bool) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"Failed to parse {name}: {text!r}") from None
    if value < 0 and not (allow_minus_one and value == -1):
        raise web.HTTPBadRequest(text=f"Negative {name} provided: {value}")
    return value


def _describe(path: str) -> dict[str, object]:
    info = os.stat(path)
    return {
        "path": path,
        "nlink": info.st_nlink,
        "size": info.st_size,
        "mtime": int(info.st_mtime),
        "mode": stat.filemode(info.st_mode),
        "uid": _user_name(info.st_uid),
        "gid": _group_name(info.st_gid),
    }


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
