"""What the master's HTTP handlers share: typed application keys (aiohttp warns about plain strings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from butte.master.service import MasterService

SERVICE: web.AppKey[MasterService] = web.AppKey("service")
FLAGS: web.AppKey[dict[str, str]] = web.AppKey("flags")


def leader_address(service: MasterService) -> str | None:
    """The leading master's ``hostname:port`` (this one when it leads), None when no leader is known."""
    if service.leading:
        config = service.state.config
        return f"{config.hostname}:{config.port}"
    info = service.leader_info
    if info is None:
        return None
    address = info.get("address")
    hostname = info.get("hostname") or (address.get("ip") if isinstance(address, dict) else None)
    port = info.get("port")
    return f"{hostname}:{port}" if hostname and port else None
