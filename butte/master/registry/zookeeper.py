"""The master's registry replicated in ZooKeeper (``--zk``): the same interface as ``sqlite.py``.

Every write returns only once the ensemble's quorum has it, and the master acts on a change only after the
write returned, so whichever master leads next reads what this one promised.

Writes are fenced by leadership: each is one transaction whose first operation checks that the election znode
this master leads with still exists at version 0 (it is never rewritten). A deposed leader — paused past its
session timeout while another was elected — may resume and write before kazoo tells it the session is gone, and
kazoo may even send a request queued before the expiry on the new session; the check makes ZooKeeper refuse the
whole transaction, since an expired session's ephemeral znode is gone (Curator's leader-latch fencing). Reads
are not fenced: a stale read only feeds an action whose write is.

Layout, in a sibling of the election path (``/butte`` -> ``/butte-registry``): pymesos takes ``min()`` of
the election path's children and parses it as MasterInfo JSON, so no other node may ever live there.
- ``<registry>/agents/<agent id>``: ``{"state": "admitted"|"unreachable"|"gone", "info": <AgentInfo JSON>}``,
  plus ``"marked_at": <seconds since the epoch>`` once marked unreachable or gone (older marks have none)
- ``<registry>/weights``: ``{"<role>": <weight>, ...}``
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol, final

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, RolledBackError, SessionExpiredError

from butte.core.errors import CoordinatorUnavailable
from butte.master.registry import NotLeader
from butte.master.registry_gc import PRUNABLE_STATES, AgentMark

# The version of an election znode as created: it is never set again, so any other answer means it is not ours.
_FENCE_VERSION = 0


def _refused(result: object) -> bool:
    """Whether a transaction result is the operation that failed (the others come back RolledBackError)."""
    return isinstance(result, KazooException) and not isinstance(result, RolledBackError)


def registry_path(election_path: str) -> str:
    """The registry's znode beside the election path: ``/butte`` -> ``/butte-registry``."""
    base = election_path.rstrip("/")
    return f"{base}-registry" if base else "/butte-registry"


class LeaderFence(Protocol):
    """Who may write: the master's contender (:class:`butte.master.leadership.zookeeper.ZkContender`)."""

    def leading_node(self) -> str | None:
        """The election znode this master leads with, None when it does not lead."""
        ...

    def fence_lost(self, node_path: str) -> None:
        """A write found ``node_path`` gone: stop leading."""
        ...


@final
class ZkRegistry:
    """Agents and weights as small JSON znodes; blocking calls (one round trip each, on loopback ~1 ms).

    With a ``fence`` every write is refused unless this master leads (:class:`NotLeader`). Without one (tools
    and tests that read the registry from outside) writes are transactions with no leadership check.
    """

    def __init__(
        self,
        client: KazooClient,
        election_path: str,
        *,
        fence: LeaderFence | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._zk = client
        self._clock = clock
        self._fence = fence
        self.path = registry_path(election_path)
        self._agents = f"{self.path}/agents"
        self._weights = f"{self.path}/weights"
        self._call(self._zk.ensure_path, self._agents)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except (KazooException, TimeoutError) as exc:
            raise CoordinatorUnavailable(f"registry in ZooKeeper: {type(exc).__name__}: {exc}") from exc

    def _write(self, add: Callable[[TransactionRequest], object]) -> KazooException | None:
        """Commit the operations ``add`` puts in a transaction, behind the leadership check.

        Returns the first refused operation's error (NoNodeError, NodeExistsError ...), None if all were applied;
        a refused transaction applied nothing.

        Raises:
            NotLeader: this master does not lead, or its election znode is gone (nothing was sent or stored).
            CoordinatorUnavailable: ZooKeeper did not answer (the write may or may not have been applied).
        """
        node = self._fence_node()
        transaction = self._zk.transaction()
        if node is not None:
            transaction.check(node, _FENCE_VERSION)
        add(transaction)
        try:
            results = self._call(transaction.commit)
        except CoordinatorUnavailable as exc:
            if node is not None and isinstance(exc.__cause__, SessionExpiredError):
                raise self._deposed(node) from exc
            raise
        refused = [r for r in results if _refused(r)]
        if node is not None and _refused(results[0]):  # the check itself failed (NoNodeError): not ours any more
            raise self._deposed(node) from results[0]
        return refused[0] if refused else None

    def _fence_node(self) -> str | None:
        """The election znode to check, None when unfenced.

        Raises:
            NotLeader: the fence says this master does not lead (nothing is sent).
        """
        if self._fence is None:
            return None
        node = self._fence.leading_node()
        if node is None:
            raise NotLeader("registry write refused: this master does not lead")
        return node

    def _deposed(self, node: str) -> NotLeader:
        assert self._fence is not None
        self._fence.fence_lost(node)
        return NotLeader(f"registry write refused: election znode {node} is gone, another master leads")

    @staticmethod
    def _raise_if(refused: KazooException | None) -> None:
        if refused is not None:
            raise CoordinatorUnavailable(f"registry in ZooKeeper: {type(refused).__name__}: {refused}")

    def _put(self, path: str, value: object) -> None:
        data = json.dumps(value, separators=(",", ":")).encode()
        refused = self._write(lambda t: t.set_data(path, data))
        if isinstance(refused, NoNodeError):
            refused = self._write(lambda t: t.create(path, data))
            if isinstance(refused, NodeExistsError):  # another master created it between our two calls
                refused = self._write(lambda t: t.set_data(path, data))
        self._raise_if(refused)

    def _get(self, path: str) -> Any:
        try:
            data, _ = self._call(self._zk.get, path)
        except CoordinatorUnavailable as exc:
            if isinstance(exc.__cause__, NoNodeError):
                return None
            raise
        return json.loads(data)

    def admit(self, agent_id: str, info: bytes) -> None:
        """Record an admitted agent (or readmit one).

        Raises:
            NotLeader: this master no longer leads; nothing was written.
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        self._put(f"{self._agents}/{agent_id}", {"state": "admitted", "info": json.loads(info)})

    def mark(self, agent_id: str, state: str) -> None:
        """Move an agent to ``unreachable`` or ``gone``, recording when (the registry GC ages it from then).

        Raises:
            NotLeader: this master no longer leads; nothing was written.
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        record = self._get(f"{self._agents}/{agent_id}")
        if record is not None:
            self._put(f"{self._agents}/{agent_id}", {**record, "state": state, "marked_at": self._clock()})

    def remove(self, agent_id: str) -> None:
        """Forget an agent.

        Raises:
            NotLeader: this master no longer leads; nothing was deleted.
            CoordinatorUnavailable: ZooKeeper did not take the delete.
        """
        path = f"{self._agents}/{agent_id}"
        refused = self._write(lambda t: t.delete(path))
        if not isinstance(refused, NoNodeError):
            self._raise_if(refused)

    def agents(self) -> dict[str, tuple[str, dict[str, object]]]:
        """Every recorded agent: id -> (state, AgentInfo as JSON data).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        found: dict[str, tuple[str, dict[str, object]]] = {}
        for agent_id in self._call(self._zk.get_children, self._agents):
            record = self._get(f"{self._agents}/{agent_id}")
            if record is not None:
                found[agent_id] = (str(record["state"]), record["info"])
        return found

    def marked_agents(self) -> dict[str, AgentMark]:
        """The agents marked unreachable or gone: id -> state and time of the mark (None if written without).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        found: dict[str, AgentMark] = {}
        for agent_id in self._call(self._zk.get_children, self._agents):
            record = self._get(f"{self._agents}/{agent_id}")
            if record is not None and record["state"] != "admitted":
                marked_at = record.get("marked_at")
                found[agent_id] = AgentMark(str(record["state"]), None if marked_at is None else float(marked_at))
        return found

    def prune(self, agent_ids: Collection[str]) -> list[str]:
        """Forget those of the agents still marked unreachable or gone; the ids forgotten.

        Each delete names the version read, so a record rewritten since (the agent reregistered) is kept.

        Raises:
            NotLeader: this master no longer leads; nothing more was deleted.
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        pruned: list[str] = []
        for agent_id in sorted(agent_ids):
            path = f"{self._agents}/{agent_id}"
            try:
                data, stat = self._call(self._zk.get, path)
            except CoordinatorUnavailable as exc:
                if isinstance(exc.__cause__, NoNodeError):
                    continue
                raise
            if json.loads(data).get("state") not in PRUNABLE_STATES:
                continue
            if self._delete_if_unchanged(path, stat.version):
                pruned.append(agent_id)
        return pruned

    def _delete_if_unchanged(self, path: str, version: int) -> bool:
        """Delete the znode if it is still at ``version``; whether it was deleted."""

        def delete(transaction: TransactionRequest) -> object:
            return transaction.delete(path, version=version)

        return self._write(delete) is None

    def state_of(self, agent_id: str) -> str | None:
        """``admitted``, ``unreachable``, ``gone`` or None if unknown.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        record = self._get(f"{self._agents}/{agent_id}")
        return None if record is None else str(record["state"])

    def save_weights(self, weights: dict[str, float]) -> None:
        """Replace the stored weights.

        Raises:
            NotLeader: this master no longer leads; nothing was written.
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        self._put(self._weights, dict(sorted(weights.items())))

    def weights(self) -> dict[str, float]:
        """The stored weights.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        stored = self._get(self._weights) or {}
        return {str(role): float(weight) for role, weight in stored.items()}

    def close(self) -> None:
        """Nothing of its own to close: the session belongs to the master's contender."""
