"""The master's durable registry in SQLite: admitted, unreachable and gone agents, and weights.

Written before the master acts on a change, so a restarted master knows which agents it admitted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path

from butte.master.registry_gc import PRUNABLE_STATES, AgentMark

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'admitted',
    marked_at REAL
);
CREATE TABLE IF NOT EXISTS weights (
    role TEXT PRIMARY KEY,
    weight REAL NOT NULL
);
"""


class SqliteRegistry:
    """Agents and weights, one small SQLite file under the master's work dir."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_marked_at()

    def _add_marked_at(self) -> None:
        # A registry written before marks carried a time: add the column; its old marks read as None.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(agents)")}
        if "marked_at" not in columns:
            self._db.execute("ALTER TABLE agents ADD COLUMN marked_at REAL")

    def admit(self, agent_id: str, info: bytes) -> None:
        """Record an admitted agent (or readmit one)."""
        self._db.execute(
            "INSERT INTO agents (id, info, state, marked_at) VALUES (?, ?, 'admitted', NULL) "
            "ON CONFLICT(id) DO UPDATE SET info = excluded.info, state = 'admitted', marked_at = NULL",
            (agent_id, info.decode()),
        )

    def mark(self, agent_id: str, state: str) -> None:
        """Move an agent to ``unreachable`` or ``gone``, recording when (the registry GC ages it from then)."""
        self._db.execute("UPDATE agents SET state = ?, marked_at = ? WHERE id = ?", (state, self._clock(), agent_id))

    def remove(self, agent_id: str) -> None:
        """Forget an agent."""
        self._db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))

    def agents(self) -> dict[str, tuple[str, dict[str, object]]]:
        """Every recorded agent: id -> (state, AgentInfo as JSON data)."""
        rows = self._db.execute("SELECT id, state, info FROM agents").fetchall()
        return {row[0]: (row[1], json.loads(row[2])) for row in rows}

    def state_of(self, agent_id: str) -> str | None:
        """``admitted``, ``unreachable``, ``gone`` or None if unknown."""
        row = self._db.execute("SELECT state FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else str(row[0])

    def marked_agents(self) -> dict[str, AgentMark]:
        """The agents marked unreachable or gone: id -> state and time of the mark."""
        rows = self._db.execute("SELECT id, state, marked_at FROM agents WHERE state != 'admitted'").fetchall()
        return {row[0]: AgentMark(str(row[1]), None if row[2] is None else float(row[2])) for row in rows}

    def prune(self, agent_ids: Collection[str]) -> list[str]:
        """Forget those of the agents still marked unreachable or gone, in one transaction; the ids forgotten."""
        pruned: list[str] = []
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for agent_id in sorted(agent_ids):
                cursor = self._db.execute(
                    "DELETE FROM agents WHERE id = ? AND state IN (?, ?)", (agent_id, *PRUNABLE_STATES)
                )
                if cursor.rowcount:
                    pruned.append(agent_id)
        return pruned

    def save_weights(self, weights: dict[str, float]) -> None:
        """Replace the stored weights."""
        with self._db:
            self._db.execute("DELETE FROM weights")
            self._db.executemany("INSERT INTO weights VALUES (?, ?)", sorted(weights.items()))

    def weights(self) -> dict[str, float]:
        """The stored weights."""
        return {row[0]: float(row[1]) for row in self._db.execute("SELECT role, weight FROM weights")}

    def close(self) -> None:
        """Close the database."""
        self._db.close()
