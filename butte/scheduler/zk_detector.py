"""Finding the leading master in ZooKeeper, as Mesos's detector does (``reference/mesos-v1-api.md`` §5).

Masters hold ephemeral sequential ``<path>/json.info_<seq>`` znodes with their MasterInfo as JSON; the lowest
sequence leads. Children that are not sequence nodes (``log_replicas``) or use another label are skipped.
kazoo runs its own threads; every change is handed to the asyncio loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.retry import KazooRetry

from butte.core.errors import ValidationError

log = logging.getLogger(__name__)

MASTER_INFO_LABEL = "json.info_"
DEFAULT_SESSION_TIMEOUT_S = 10.0
READ_RETRY_S = 0.5  # after a failed read of the election group


@dataclass(frozen=True, slots=True)
class ZkUrl:
    """``zk://host1:port1,host2:port2/path``: the connect string and the group's path."""

    hosts: str
    path: str


def parse_zk_url(url: str) -> ZkUrl:
    """Split a ``zk://`` (or ``zoo://``) URL; ``file:///f`` names a file holding one.

    Raises:
        ValidationError: not a ZooKeeper URL, no hosts, or credentials (digest auth is not supported).
    """
    text = url.strip()
    if text.startswith("file://"):
        with open(text.removeprefix("file://")) as handle:
            text = handle.read().strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("zk", "zoo"):
        raise ValidationError("zk", f"expected zk://host:port,.../path, got {url!r}")
    hosts, slash, path = rest.partition("/")
    if "@" in hosts:
        raise ValidationError("zk", "ZooKeeper credentials in the URL are not supported")
    if not hosts:
        raise ValidationError("zk", f"no ZooKeeper hosts in {url!r}")
    return ZkUrl(hosts=hosts, path="/" + path.strip("/") if slash else "/")


def sequence_of(name: str) -> int | None:
    """The sequence number of a ``json.info_<seq>`` child, or None for any other name."""
    label, sep, digits = name.rpartition("_")
    if not sep or label + "_" != MASTER_INFO_LABEL or not digits.isdigit():
        return None
    return int(digits)


def leader_child(children: list[str]) -> str | None:
    """The child with the lowest sequence number among the ``json.info_`` members, or None."""
    members = [(seq, name) for name in children if (seq := sequence_of(name)) is not None]
    return min(members)[1] if members else None


def child_path(path: str, child: str) -> str:
    """``path/child`` without a double slash under the root."""
    return f"{path.rstrip('/')}/{child}"


def address_of(info: dict[str, Any]) -> str | None:
    """``ip:port`` from MasterInfo JSON (``address`` first, as pymesos reads it), or None."""
    address = info.get("address")
    if isinstance(address, dict) and address.get("ip") and address.get("port"):
        return f"{address['ip']}:{address['port']}"
    hostname, port = info.get("hostname"), info.get("port")
    return f"{hostname}:{port}" if hostname and port else None


def read_leader(client: KazooClient, path: str) -> tuple[int, dict[str, Any]] | None:
    """The current leader's (sequence, MasterInfo JSON), or None when there is none or it just vanished."""
    try:
        child = leader_child(client.get_children(path))
        if child is None:
            return None
        data, _ = client.get(child_path(path, child))
    except NoNodeError:
        return None
    try:
        info = json.loads(data)
    except ValueError:
        log.warning("leader znode %s does not hold JSON", child)
        return None
    seq = sequence_of(child)
    return None if seq is None or not isinstance(info, dict) else (seq, info)


def read_again_later(read: Callable[[], None]) -> None:
    """Run ``read`` on a thread of its own after :data:`READ_RETRY_S` (a read of the election group failed)."""
    timer = threading.Timer(READ_RETRY_S, read)
    timer.daemon = True
    timer.start()


def make_client(hosts: str, session_timeout_s: float) -> KazooClient:
    """A kazoo client that keeps retrying to connect (a detector outlives ensemble restarts)."""
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout_s,
        connection_retry=KazooRetry(max_tries=-1, max_delay=1.0),
        command_retry=KazooRetry(max_tries=3, max_delay=1.0),
    )


@final
class ZkDetector:
    """A ``MasterDetector`` over ZooKeeper: the leader's ``ip:port``, updated by a children watch."""

    def __init__(self, url: str, session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S) -> None:
        self.url = parse_zk_url(url)
        self._session_timeout_s = session_timeout_s
        self._client: KazooClient | None = None
        self._address: str | None = None
        self.info: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def leader(self) -> str:
        """The leader's ``ip:port``; waits while no leader is known."""
        return await self.next_leader(None)

    async def next_leader(self, previous: str | None) -> str:
        """Wait until a leader is known and differs from ``previous``."""
        await self._ensure_started()
        while self._address is None or self._address == previous:
            self._changed.clear()
            await self._changed.wait()
        return self._address

    async def _ensure_started(self) -> None:
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._client = client = make_client(self.url.hosts, self._session_timeout_s)
        while True:
            try:
                await asyncio.to_thread(client.start, self._session_timeout_s)
                await asyncio.to_thread(client.ensure_path, self.url.path)
                break
            except (KazooException, TimeoutError) as exc:
                # kazoo's start() gives up after its timeout; ZooKeeper may come up later, so try again.
                log.warning("ZooKeeper at %s not reachable yet: %s", self.url.hosts, exc)
        await asyncio.to_thread(client.ChildrenWatch, self.url.path, self._on_children, allow_session_lost=True)

    def _on_children(self, children: list[str]) -> None:
        self._read(bool(leader_child(children)))

    def _read(self, any_leader: bool = True) -> None:
        # kazoo's thread (or a retry timer's): read the leader there, hand the answer to the loop.
        client, loop = self._client, self._loop
        if client is None or loop is None or loop.is_closed():
            return
        try:
            found = read_leader(client, self.url.path) if any_leader else None
        except KazooException as exc:
            # The group may not change again: a dropped read would leave us without a leader for good.
            log.warning("ZooKeeper leader read failed (%s); reading again in %.1f s", exc, READ_RETRY_S)
            read_again_later(self._read)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we read
            loop.call_soon_threadsafe(self._set_leader, found)

    def _set_leader(self, found: tuple[int, dict[str, Any]] | None) -> None:
        self.info = found[1] if found else None
        address = address_of(found[1]) if found else None
        if address != self._address:
            log.info("leading master: %s", address or "none")
        self._address = address
        self._changed.set()

    async def close(self) -> None:
        """Stop the ZooKeeper session."""
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)
