"""What the master's HTTP handlers share: typed application keys (aiohttp warns about plain strings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from butte.master.service import MasterService

SERVICE: web.AppKey[MasterService] = web.AppKey("service")
FLAGS: web.AppKey[dict[str, str]] = web.AppKey("flags")
