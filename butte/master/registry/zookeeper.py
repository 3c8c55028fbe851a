"""The master's registry replicated in ZooKeeper (``--zk``): the same interface as ``sqlite.py``.

Every write returns only once the ensemble's quorum has it, and the master acts on a change only after the
write returned, so whichever master leads next reads what this one promised.

Layout, in a sibling of the election path (``/butte`` -> ``/butte-registry``): pymesos takes ``min()`` of
the election path's children and parses it as MasterInfo JSON, so no other node may ever live there.
- ``<registry>/agents/<agent id>``: ``{"state": "admitted"|"unreachable"|"gone", "info": <AgentInfo JSON>}``
- ``<registry>/weights``: ``{"<role>": <weight>, ...}``
"""

from __future__ import annotations

import json
from typing import Any, final

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

from butte.core.errors import CoordinatorUnavailable


def registry_path(election_path: str) -> str:
    """The registry's znode beside the election path: ``/butte`` -> ``/butte-registry``."""
    base = election_path.rstrip("/")
    return f"{base}-registry" if base else "/butte-registry"


@final
class ZkRegistry:
    """Agents and weights as small JSON znodes; blocking calls (one round trip each, on loopback ~1 ms)."""

    def __init__(self, client: KazooClient, election_path: str) -> None:
        self._zk = client
        self.path = registry_path(election_path)
        self._agents = f"{self.path}/agents"
        self._weights = f"{self.path}/weights"
        self._call(self._zk.ensure_path, self._agents)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except (KazooException, TimeoutError) as exc:
            raise CoordinatorUnavailable(f"registry in ZooKeeper: {type(exc).__name__}: {exc}") from exc

    def _put(self, path: str, value: object) -> None:
        data = json.dumps(value, separators=(",", ":")).encode()
        try:
            self._call(self._zk.set, path, data)
        except CoordinatorUnavailable as exc:
            if not isinstance(exc.__cause__, NoNodeError):
                raise
            try:
                self._call(self._zk.create, path, data, makepath=True)
            except CoordinatorUnavailable as again:
                if not isinstance(again.__cause__, NodeExistsError):
                    raise
                self._call(self._zk.set, path, data)  # another master created it between our two calls

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
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        self._put(f"{self._agents}/{agent_id}", {"state": "admitted", "info": json.loads(info)})

    def mark(self, agent_id: str, state: str) -> None:
        """Move an agent to ``unreachable`` or ``gone``.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        record = self._get(f"{self._agents}/{agent_id}")
        if record is not None:
            self._put(f"{self._agents}/{agent_id}", {**record, "state": state})

    def remove(self, agent_id: str) -> None:
        """Forget an agent.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the delete.
        """
        try:
            self._call(self._zk.delete, f"{self._agents}/{agent_id}")
        except CoordinatorUnavailable as exc:
            if not isinstance(exc.__cause__, NoNodeError):
                raise

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
