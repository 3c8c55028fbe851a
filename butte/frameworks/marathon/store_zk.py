"""Marathon's state in ZooKeeper (``--zk zk://h1:2181,h2:2181/marathon``), for several Marathons.

Like Marathon's own ZooKeeper store, every value is a znode under ``<path>/state``:
- ``framework_id``, ``root`` (the current root group)
- ``root-versions/<version>``, ``apps/<app id>/<version>`` (newest 50 of each kept)
- ``deployments/<deployment id>``, ``instances/<task id>``
Names are percent-encoded (an app id holds slashes). Values are the JSON of :mod:`store`, zlib-compressed: a
znode holds at most 1 MB (``jute.maxbuffer``) and a root group of a thousand apps is about that as JSON.

Writes that change several znodes (a root and its versions, a burst of instances) are one ZooKeeper
transaction. kazoo's blocking calls run on the store's worker thread; kazoo errors become
:class:`~butte.core.errors.CoordinatorUnavailable`.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, final
from urllib.parse import quote, unquote

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from butte.core.errors import CoordinatorUnavailable, ValidationError
from butte.frameworks.marathon.model import DeploymentPlan, Instance, RootGroup
from butte.frameworks.marathon.store import (
    SerialWorker,
    StoredState,
    T,
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
from butte.scheduler.zk_detector import DEFAULT_SESSION_TIMEOUT_S, child_path, make_client, parse_zk_url
from butte.wire.marathon import App

# What one request may carry: ZooKeeper's default jute.maxbuffer (1 MiB), less room for paths and framing.
MAX_REQUEST_BYTES: Final = 1_000_000


def pack(data: bytes) -> bytes:
    return zlib.compress(data)


def unpack(data: bytes) -> bytes:
    return zlib.decompress(data)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction: ``create`` or ``set`` with data, or ``delete``."""

    kind: str
    path: str
    data: bytes = b""


def batches(ops: Sequence[Op], limit_bytes: int = MAX_REQUEST_BYTES) -> list[list[Op]]:
    """Split ``ops`` into runs whose data fits one request each (only instance bursts ever need more than one).

    Raises:
        ValidationError: one value alone is larger than a znode may be.
    """
    runs: list[list[Op]] = [[]]
    size = 0
    for op in ops:
        cost = len(op.data) + len(op.path)
        if cost > limit_bytes:
            raise ValidationError(op.path, f"{cost} bytes compressed: more than a ZooKeeper node holds")
        if size + cost > limit_bytes and runs[-1]:
            runs.append([])
            size = 0
        runs[-1].append(op)
        size += cost
    return [run for run in runs if run]


def _converted(call: Callable[..., T], *args: object) -> T:
    """Run a kazoo call; its errors become CoordinatorUnavailable (once, here, for every call)."""
    try:
        return call(*args)
    except (KazooException, KazooTimeoutError) as exc:
        raise CoordinatorUnavailable(f"Marathon's store in ZooKeeper: {type(exc).__name__}: {exc}") from exc


@final
class ZkStore:
    """A :class:`~butte.frameworks.marathon.store.MarathonStore` in ZooKeeper; open one with :meth:`open`."""

    def __init__(self, client: KazooClient, path: str, *, owns_client: bool = False) -> None:
        """Use a started ``client`` (shared with leader election, or owned) and keep state under ``path``."""
        self._zk = client
        self._owns_client = owns_client
        self.path = child_path(path, "state")
        self._worker = SerialWorker("marathon-zk")
        self._root: RootGroup | None = None  # last loaded or saved: only changed apps get version entries

    def _node(self, *names: str) -> str:
        return "/".join([self.path, *(quote(name, safe="") for name in names)])

    @classmethod
    async def open(cls, zk_url: str, *, session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S) -> ZkStore:
        """Connect to the ensemble in ``zk_url`` and keep state under its path (``/marathon/state``).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer within the session timeout.
            ValidationError: not a ZooKeeper URL.
        """
        url = parse_zk_url(zk_url)
        client = make_client(url.hosts, session_timeout_s)
        store = cls(client, url.path, owns_client=True)
        try:
            await store._run(client.start, session_timeout_s)
            await store._run(store._ensure_layout)
        except BaseException:
            await store.close()
            raise
        return store

    def _ensure_layout(self) -> None:
        for name in ("root-versions", "apps", "deployments", "instances"):
            self._zk.ensure_path(self._node(name))

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await self._worker.run(_converted, call, *args)

    # --- reading -----------------------------------------------------------------------------------------------

    def _get(self, path: str) -> bytes | None:
        try:
            data, _ = self._zk.get(path)
        except NoNodeError:
            return None
        return unpack(data) if data else None

    def _children(self, path: str) -> list[str]:
        try:
            return [unquote(name) for name in self._zk.get_children(path)]
        except NoNodeError:
            return []

    def _get_all(self, path: str) -> list[bytes]:
        """Every child's value, the reads pipelined (thousands of instances cost one round trip's wait)."""
        pending = [self._zk.get_async(child_path(path, name)) for name in self._zk.get_children(path)]
        values: list[bytes] = []
        for result in pending:
            try:
                data, _ = result.get()
            except NoNodeError:
                continue  # deleted between the listing and the read
            values.append(unpack(data))
        return values

    async def load(self) -> StoredState:
        """Everything stored: framework id, current root, running deployments, instances.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
            msgspec.DecodeError: a stored value is not what this version of Butte writes.
        """
        return await self._run(self._load)

    def _load(self) -> StoredState:
        framework_id = self._get(self._node("framework_id"))
        root = self._get(self._node("root"))
        self._root = None if root is None else decode_root(root)
        deployments = [decode_deployment(data) for data in self._get_all(self._node("deployments"))]
        instances = [decode_instance(data) for data in self._get_all(self._node("instances"))]
        return stored_state(None if framework_id is None else framework_id.decode(), self._root, deployments, instances)

    async def app_versions(self, app_id: str) -> list[str]:
        """The stored versions of an app, newest first (empty if none).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        return newest_first(await self._run(self._children, self._node("apps", app_id)))

    async def app_version(self, app_id: str, version: str) -> App | None:
        """One stored version of an app, or None.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        data = await self._run(self._get, self._node("apps", app_id, version))
        return None if data is None else decode_app(data)

    async def root_versions(self) -> list[str]:
        """The stored root group versions, newest first.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        return newest_first(await self._run(self._children, self._node("root-versions")))

    async def root_version(self, version: str) -> RootGroup | None:
        """The root group as it was at ``version``, or None.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not answer.
        """
        data = await self._run(self._get, self._node("root-versions", version))
        return None if data is None else decode_root(data)

    # --- writing -----------------------------------------------------------------------------------------------

    def _upserts(self, values: Iterable[tuple[str, bytes]]) -> list[Op]:
        """``set`` for znodes that exist, ``create`` for the others (existence asked pipelined)."""
        pending = [(path, data, self._zk.exists_async(path)) for path, data in values]
        return [Op("set" if exists.get() else "create", path, pack(data)) for path, data, exists in pending]

    def _commit(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` atomically (in several transactions only if they exceed one request).

        Raises:
            CoordinatorUnavailable: the ensemble refused the transaction (another writer got in between).
            ValidationError: one value is larger than a znode may be.
        """
        for run in batches(ops):
            transaction = self._zk.transaction()
            for op in run:
                if op.kind == "create":
                    transaction.create(op.path, op.data)
                elif op.kind == "set":
                    transaction.set_data(op.path, op.data)
                else:
                    transaction.delete(op.path)
            failures: list[Any] = [r for r in transaction.commit() if isinstance(r, Exception)]
            if failures:
                raise CoordinatorUnavailable(f"transaction in ZooKeeper refused: {failures!r}")

    async def save_framework_id(self, framework_id: str) -> None:
        """Remember the framework id Mesos gave us.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        await self._run(self._write, [(self._node("framework_id"), framework_id.encode())])

    def _write(self, values: list[tuple[str, bytes]]) -> None:
        self._commit(self._upserts(values))

    async def save_root(self, root: RootGroup) -> None:
        """Store ``root`` as the current root, as a root version, and a version entry for each changed app.

        One transaction; versions beyond the newest 50 (per app, and of the root) are dropped in it, except
        those ``root`` uses.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write (nothing of it was stored).
            ValidationError: the root group is too large for a znode.
        """
        await self._run(self._save_root, root)

    def _save_root(self, root: RootGroup) -> None:
        encoded = encode_root(root)
        values = [(self._node("root"), encoded)]
        if root.version:
            values.append((self._node("root-versions", root.version), encoded))
        apps = [app for app in changed_apps(self._root, root) if app_version_of(app)]
        values += [(self._node("apps", app.id, app_version_of(app)), encode_app(app)) for app in apps]
        ops = [*self._app_dirs(apps), *self._upserts(values)]
        for app in apps:
            stored = self._children(self._node("apps", app.id))
            ops += [Op("delete", self._node("apps", app.id, v)) for v in self._drops(stored, app_version_of(app))]
        stored_roots = self._children(self._node("root-versions"))
        ops += [Op("delete", self._node("root-versions", v)) for v in self._drops(stored_roots, root.version)]
        self._commit(ops)
        self._root = root

    def _app_dirs(self, apps: Sequence[App]) -> list[Op]:
        """``create`` for the version directories of apps never stored before."""
        pending = [(self._node("apps", app.id), self._zk.exists_async(self._node("apps", app.id))) for app in apps]
        return [Op("create", path) for path, exists in dict(pending).items() if not exists.get()]

    @staticmethod
    def _drops(stored: list[str], new_version: str) -> list[str]:
        return versions_to_drop([*stored, new_version] if new_version else stored, keep=[new_version])

    async def save_deployment(self, plan: DeploymentPlan, current_step: int) -> None:
        """Store a running deployment and the step it is at.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        value = (self._node("deployments", plan.id), encode_deployment(plan, current_step))
        await self._run(self._write, [value])

    async def delete_deployment(self, deployment_id: str) -> None:
        """Forget a finished or cancelled deployment (nothing happens if it is unknown).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the delete.
        """
        await self._run(self._delete, self._node("deployments", deployment_id))

    def _delete(self, path: str) -> None:
        with contextlib.suppress(NoNodeError):
            self._zk.delete(path)

    async def save_instance(self, instance: Instance) -> None:
        """Store one instance, replacing what was stored under its task id.

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        await self.save_instances([instance])

    async def save_instances(self, instances: Sequence[Instance]) -> None:
        """Store several instances in one transaction (split only if they exceed one ZooKeeper request).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the write.
        """
        # A burst may carry several updates of one task; the last wins, and a transaction creates a znode once.
        latest = {instance.task_id: instance for instance in instances}
        values = [(self._node("instances", task_id), encode_instance(i)) for task_id, i in latest.items()]
        await self._run(self._write, values)

    async def delete_instance(self, task_id: str) -> None:
        """Forget an instance (nothing happens if it is unknown).

        Raises:
            CoordinatorUnavailable: ZooKeeper did not take the delete.
        """
        await self._run(self._delete, self._node("instances", task_id))

    async def close(self) -> None:
        """Finish the calls already made, then end the session if this store opened it."""
        await self._worker.close(self._stop_client if self._owns_client else lambda: None)

    def _stop_client(self) -> None:
        self._zk.stop()
        self._zk.close()
