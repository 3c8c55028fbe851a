"""Marathon's state in one SQLite file under ``--work_dir`` (a single Marathon, the default).

WAL journal with ``synchronous=FULL``: a saved instance or deployment survives a power cut, because Marathon
acts on it (kills, launches, acknowledges status updates) as soon as the save returns. Every call runs on the
store's worker thread, so the event loop never waits on the fsync. Values are the JSON of :mod:`store`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, final

from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup
from butte.frameworks.marathon.store import (
    SerialWorker,
    StoredState,
    app_version_of,
    changed_apps,
    decode_app,
    decode_deployment,
    decode_instance,
    decode_root,
    encode_app,
    encode_deployment,
    encode_instance,
    encode_root,
    newest_first,
    stored_state,
    versions_to_drop,
)
from butte.wire.marathon import App

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS root_versions (version TEXT PRIMARY KEY, root BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS app_versions (
    app_id TEXT NOT NULL,
    version TEXT NOT NULL,
    app BLOB NOT NULL,
    PRIMARY KEY (app_id, version)
);
CREATE TABLE IF NOT EXISTS deployments (id TEXT PRIMARY KEY, deployment BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS instances (task_id TEXT PRIMARY KEY, instance BLOB NOT NULL);
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` in WAL mode with the schema in place.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; the writes that must land together use transaction().
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the body raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_UPSERT_META = "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_UPSERT_ROOT_VERSION = "INSERT INTO root_versions VALUES (?, ?) ON CONFLICT(version) DO UPDATE SET root = excluded.root"
_UPSERT_APP_VERSION = (
    "INSERT INTO app_versions VALUES (?, ?, ?) ON CONFLICT(app_id, version) DO UPDATE SET app = excluded.app"
)
_UPSERT_DEPLOYMENT = (
    "INSERT INTO deployments VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET deployment = excluded.deployment"
)
_UPSERT_INSTANCE = "INSERT INTO instances VALUES (?, ?) ON CONFLICT(task_id) DO UPDATE SET instance = excluded.instance"


@final
class SqliteStore:
    """A :class:`~butte.frameworks.marathon.store.MarathonStore` in SQLite; open it with :meth:`open`."""

    def __init__(self, db: sqlite3.Connection, worker: SerialWorker) -> None:
        self._db = db
        self._worker = worker
        # The root last loaded or saved: save_root writes version entries only for apps that changed since.
        self._root: RootGroup | None = None

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open the store in the file at ``path`` (created if missing).

        Raises:
            sqlite3.Error: the file cannot be opened or is not a database.
        """
        worker = SerialWorker("marathon-sqlite")
        try:
            db = await worker.run(connect, path)
        except BaseException:
            await worker.close(lambda: None)
            raise
        return cls(db, worker)

    async def load(self) -> StoredState:
        """Everything stored: framework id, current root, running deployments, instances.

        Raises:
            sqlite3.Error: the database cannot be read.
            msgspec.DecodeError: a stored value is not what this version of Butte writes.
        """
        return await self._worker.run(self._load)

    def _load(self) -> StoredState:
        framework_id = self._meta("framework_id")
        root_data = self._meta("root")
        self._root = None if root_data is None else decode_root(root_data)
        deployments = [decode_deployment(row[0]) for row in self._db.execute("SELECT deployment FROM deployments")]
        instances = [decode_instance(row[0]) for row in self._db.execute("SELECT instance FROM instances")]
        return stored_state(None if framework_id is None else framework_id.decode(), self._root, deployments, instances)

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def save_framework_id(self, framework_id: str) -> None:
        """Remember the framework id Mesos gave us.

        Raises:
            sqlite3.Error: the write failed.
        """
        await self._worker.run(self._db.execute, _UPSERT_META, ("framework_id", framework_id.encode()))

    async def save_root(self, root: RootGroup) -> None:
        """Store ``root`` as the current root, as a root version, and a version entry for each changed app.

        Versions beyond the newest 50 (per app, and of the root) are dropped, except those ``root`` uses.

        Raises:
            sqlite3.Error: the write failed (nothing of it was stored).
        """
        await self._worker.run(self._save_root, root)

    def _save_root(self, root: RootGroup) -> None:
        apps = changed_apps(self._root, root)
        with transaction(self._db) as db:
            encoded = encode_root(root)
            db.execute(_UPSERT_META, ("root", encoded))
            if root.version:
                db.execute(_UPSERT_ROOT_VERSION, (root.version, encoded))
            for app in apps:
                if app_version_of(app):
                    db.execute(_UPSERT_APP_VERSION, (app.id, app_version_of(app), encode_app(app)))
            for app in apps:
                self._prune_app_versions(app)
            stored = [row[0] for row in db.execute("SELECT version FROM root_versions")]
            for version in versions_to_drop(stored, keep=[root.version]):
                db.execute("DELETE FROM root_versions WHERE version = ?", (version,))
        self._root = root

    def _prune_app_versions(self, app: App) -> None:
        rows = self._db.execute("SELECT version FROM app_versions WHERE app_id = ?", (app.id,))
        for version in versions_to_drop([row[0] for row in rows], keep=[app_version_of(app)]):
            self._db.execute("DELETE FROM app_versions WHERE app_id = ? AND version = ?", (app.id, version))

    async def app_versions(self, app_id: str) -> list[str]:
        """The stored versions of an app, newest first (empty if none).

        Raises:
            sqlite3.Error: the database cannot be read.
        """
        rows = await self._worker.run(self._rows, "SELECT version FROM app_versions WHERE app_id = ?", (app_id,))
        return newest_first(str(row[0]) for row in rows)

    async def app_version(self, app_id: str, version: str) -> App | None:
        """One stored version of an app, or None.

        Raises:
            sqlite3.Error: the database cannot be read.
        """
        query = "SELECT app FROM app_versions WHERE app_id = ? AND version = ?"
        rows = await self._worker.run(self._rows, query, (app_id, version))
        return decode_app(bytes(rows[0][0])) if rows else None

    async def root_versions(self) -> list[str]:
        """The stored root group versions, newest first.

        Raises:
            sqlite3.Error: the database cannot be read.
        """
        rows = await self._worker.run(self._rows, "SELECT version FROM root_versions", ())
        return newest_first(str(row[0]) for row in rows)

    async def root_version(self, version: str) -> RootGroup | None:
        """The root group as it was at ``version``, or None.

        Raises:
            sqlite3.Error: the database cannot be read.
        """
        rows = await self._worker.run(self._rows, "SELECT root FROM root_versions WHERE version = ?", (version,))
        return decode_root(bytes(rows[0][0])) if rows else None

    def _rows(self, query: str, params: tuple[str, ...]) -> list[tuple[Any, ...]]:
        return self._db.execute(query, params).fetchall()

    async def save_deployment(self, plan: DeploymentPlan, current_step: int) -> None:
        """Store a running deployment and the step it is at.

        Raises:
            sqlite3.Error: the write failed.
        """
        await self._worker.run(self._db.execute, _UPSERT_DEPLOYMENT, (plan.id, encode_deployment(plan, current_step)))

    async def delete_deployment(self, deployment_id: str) -> None:
        """Forget a finished or cancelled deployment (nothing happens if it is unknown).

        Raises:
            sqlite3.Error: the write failed.
        """
        await self._worker.run(self._db.execute, "DELETE FROM deployments WHERE id = ?", (deployment_id,))

    async def save_instance(self, instance: Instance) -> None:
        """Store one instance, replacing what was stored under its task id.

        Raises:
            sqlite3.Error: the write failed.
        """
        await self._worker.run(self._db.execute, _UPSERT_INSTANCE, (instance.task_id, encode_instance(instance)))

    async def save_instances(self, instances: Sequence[Instance]) -> None:
        """Store several instances in one transaction (a burst of status updates costs one fsync).

        Raises:
            sqlite3.Error: the write failed (none of them was stored).
        """
        rows = [(instance.task_id, encode_instance(instance)) for instance in instances]
        await self._worker.run(self._save_many, _UPSERT_INSTANCE, rows)

    def _save_many(self, statement: str, rows: list[tuple[str, bytes]]) -> None:
        with transaction(self._db) as db:
            db.executemany(statement, rows)

    async def delete_instance(self, task_id: str) -> None:
        """Forget an instance (nothing happens if it is unknown).

        Raises:
            sqlite3.Error: the write failed.
        """
        await self._worker.run(self._db.execute, "DELETE FROM instances WHERE task_id = ?", (task_id,))

    async def close(self) -> None:
        """Close the database after every call already made has finished."""
        await self._worker.close(self._db.close)
