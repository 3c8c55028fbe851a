"""Mesos's leader election in ZooKeeper (``reference/mesos-v1-api.md`` §5), with kazoo.

Each master creates an ephemeral sequential ``<path>/json.info_<seq>`` znode holding its MasterInfo JSON; the
lowest sequence leads and its sequence number is the epoch every master→agent event carries. A leader that
sees its connection SUSPENDED or its session LOST stops leading at once (Curator TN12: never act as leader
through a disconnection); after a lost session it contends again with a new znode.

The registry fences its writes with the znode this master leads with (:meth:`ZkContender.leading_node`): each
write is a transaction that first checks the znode still exists, so a deposed leader's late write fails whole.

kazoo calls us from its own threads: every view goes to the asyncio loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import final

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from butte.core.errors import CoordinatorUnavailable
from butte.master.leadership import LeaderView, ViewListener
from butte.scheduler.zk_detector import (
    MASTER_INFO_LABEL,
    READ_RETRY_S,
    child_path,
    make_client,
    parse_zk_url,
    read_again_later,
    read_leader,
)

log = logging.getLogger(__name__)


@final
class ZkContender:
    """One master's membership in the election group."""

    def __init__(self, url: str, master_info_json: bytes, session_timeout_s: float) -> None:
        self.url = parse_zk_url(url)
        self._info = master_info_json
        self._session_timeout_s = session_timeout_s
        self._client: KazooClient | None = None
        self._node: str | None = None  # our znode's name, e.g. json.info_0000000003
        self._leading_node: str | None = None  # our znode's full path while we lead (the registry's fence)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: ViewListener | None = None

    @property
    def client(self) -> KazooClient:
        """The kazoo client (started by :meth:`start`)."""
        assert self._client is not None, "start() first"
        return self._client

    @property
    def node_path(self) -> str | None:
        """The full path of our election znode (``<path>/json.info_<seq>``), None before we joined."""
        node = self._node
        return None if node is None else f"{self.url.path.rstrip('/')}/{node}"

    def leading_node(self) -> str | None:
        """Our election znode's path while we lead, else None: registry writes check it (version 0) first.

        A follower's znode exists too, so only the one we were seen leading with may fence a write: a deposed
        leader that rejoined as a follower must not pass the check with its new znode.
        """
        return self._leading_node

    def fence_lost(self, node_path: str) -> None:
        """A fenced write found ``node_path`` gone: stop leading now, then find out who leads.

        Called on the loop by the registry; our session listener may not have heard of the loss yet (a paused
        process resumes and writes before kazoo's threads run), so the step-down must not wait for it.
        """
        if self._leading_node != node_path:
            return
        self._leading_node = None
        log.warning("election znode %s is gone: not acting as leader", node_path)
        self._report(LeaderView(leading=False))
        client = self._client
        if client is not None:
            client.handler.spawn(self._evaluate)

    async def connect(self) -> KazooClient:
        """Open the session (the registry shares it) without joining the election yet.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer within the session timeout.
        """
        if self._client is not None:
            return self._client
        client = make_client(self.url.hosts, self._session_timeout_s)
        client.add_listener(self._on_connection_state)
        try:
            await asyncio.to_thread(client.start, self._session_timeout_s)
            await asyncio.to_thread(client.ensure_path, self.url.path)
        except (KazooException, KazooTimeoutError, TimeoutError) as exc:
            raise CoordinatorUnavailable(f"ZooKeeper at {self.url.hosts}: {exc}") from exc
        self._client = client
        return client

    async def start(self, listener: ViewListener) -> None:
        """Join the election and watch the group; views go to ``listener`` on this loop.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer within the session timeout.
        """
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        client = await self.connect()
        await asyncio.to_thread(client.ChildrenWatch, self.url.path, self._on_children, allow_session_lost=True)

    async def stop(self) -> None:
        """Leave the group (our ephemeral znode goes with the session)."""
        client, self._client = self._client, None
        self._leading_node = None
        if client is not None:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)

    def _on_connection_state(self, state: str) -> None:
        # kazoo's connection thread: must not block, so the re-evaluation runs on another thread.
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._leading_node = None  # before the view: no fenced write may pass from now on
            log.warning("ZooKeeper connection %s: not acting as leader", state)
            self._report(LeaderView(leading=False))
        elif state == KazooState.CONNECTED and self._client is not None:
            self._client.handler.spawn(self._evaluate)

    def _on_children(self, children: list[str]) -> None:
        self._evaluate()

    def _evaluate(self) -> None:
        """Rejoin if our znode is gone (a new session), then report who leads."""
        client = self._client
        if client is None or not client.connected:
            return
        with self._lock:
            try:
                if self._node is None or self._node not in client.get_children(self.url.path):
                    self._join(client)
                found = read_leader(client, self.url.path)
            except KazooException as exc:
                # Nothing else may come to ask again (the group can stay as it is): a master that drops this
                # read may never learn who leads. Seen once as a standby with no leader 30 s after start.
                log.warning("ZooKeeper election read failed (%s); reading again in %.1f s", exc, READ_RETRY_S)
                read_again_later(self._evaluate)
                return
            if found is None:
                self._leading_node = None
                self._report(LeaderView(leading=False))
                return
            seq, info = found
            leading = self._node is not None and int(self._node.rsplit("_", 1)[1]) == seq
            self._leading_node = self.node_path if leading else None
        self._report(LeaderView(leading=leading, epoch=seq, leader_info=info))

    def _join(self, client: KazooClient) -> None:
        path = client.create(
            child_path(self.url.path, MASTER_INFO_LABEL), self._info, ephemeral=True, sequence=True, makepath=True
        )
        self._node = path.rsplit("/", 1)[1]
        log.info("joined the election as %s", path)

    def _report(self, view: LeaderView) -> None:
        loop, listener = self._loop, self._listener
        if loop is not None and listener is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check
                loop.call_soon_threadsafe(listener, view)
