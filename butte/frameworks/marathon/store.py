"""Marathon's persistent state: the port both backends implement, and the JSON they store.

What is kept, as Marathon keeps it in its own ZooKeeper store (``docs/docs/high-availability.md``):
- the framework id, so a restarted or newly elected Marathon fails over instead of registering anew;
- the current root group, and every root group version (``/v2/groups/versions``), newest 50 kept;
- every app version ever deployed (``/v2/apps/{id}/versions``), newest 50 per app kept, as Marathon's
  ``--max_versions`` (default 50) prunes them;
- running deployments with the step they are at, and every instance (task) with its health.

Backends: :mod:`store_sqlite` (one file under ``--work_dir``, the default) and :mod:`store_zk` (``--zk``, for
several Marathons). Both run their blocking calls on one worker thread per store, in the order they were asked
for, so the event loop never waits on an fsync or a ZooKeeper round trip and two saves never interleave.

The frozen core values of :mod:`model` are converted to the ``*Record`` structs below at this boundary, so a
rename in the core never silently changes what is on disk.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import msgspec

from butte.frameworks.marathon.model import (
    Action,
    ActionKind,
    DeploymentPlan,
    GroupMeta,
    HealthResult,
    Instance,
    RootGroup,
    Step,
    parse_timestamp,
)
from butte.wire.marathon import App

T = TypeVar("T")

MAX_VERSIONS: Final = 50
"""Marathon's ``--max_versions`` default: versions kept per app, and root group versions kept."""


@final
@dataclass(frozen=True, slots=True)
class StoredState:
    """Everything a (re)started Marathon needs to carry on: read once by :meth:`MarathonStore.load`."""

    framework_id: str | None
    root: RootGroup
    deployments: tuple[tuple[DeploymentPlan, int], ...]
    instances: tuple[Instance, ...]


class MarathonStore(Protocol):
    """Marathon's durable state; every write has returned only once it is durable."""

    async def load(self) -> StoredState: ...

    async def save_framework_id(self, framework_id: str) -> None: ...

    async def save_root(self, root: RootGroup) -> None: ...

    async def app_versions(self, app_id: str) -> list[str]: ...

    async def app_version(self, app_id: str, version: str) -> App | None: ...

    async def root_versions(self) -> list[str]: ...

    async def root_version(self, version: str) -> RootGroup | None: ...

    async def save_deployment(self, plan: DeploymentPlan, current_step: int) -> None: ...

    async def delete_deployment(self, deployment_id: str) -> None: ...

    async def save_instance(self, instance: Instance) -> None: ...

    async def save_instances(self, instances: Sequence[Instance]) -> None: ...

    async def delete_instance(self, task_id: str) -> None: ...

    async def close(self) -> None: ...


async def open_store(work_dir: Path, zk_url: str | None, *, session_timeout_s: float = 10.0) -> MarathonStore:
    """The store for these flags: ZooKeeper under the URL's path with ``--zk``, else SQLite under ``work_dir``.

    Raises:
        CoordinatorUnavailable: ``zk_url`` is set and ZooKeeper did not answer within the session timeout.
        ValidationError: ``zk_url`` is not a ZooKeeper URL.
    """
    if zk_url:
        from butte.frameworks.marathon.store_zk import ZkStore  # kazoo only for Marathons that use ZooKeeper

        return await ZkStore.open(zk_url, session_timeout_s=session_timeout_s)
    from butte.frameworks.marathon.store_sqlite import SqliteStore

    return await SqliteStore.open(work_dir / "marathon.db")


# --- versions ---------------------------------------------------------------------------------------------------


def version_key(version: str) -> tuple[float, str]:
    """Sort key of a version: its time (Marathon versions are ISO 8601 timestamps), then the text."""
    try:
        return (parse_timestamp(version), version)
    except ValueError:
        return (float("-inf"), version)


def newest_first(versions: Iterable[str]) -> list[str]:
    """Versions ordered newest first, as ``/v2/apps/{id}/versions`` lists them."""
    return sorted(set(versions), key=version_key, reverse=True)


def versions_to_drop(versions: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """The versions beyond the newest :data:`MAX_VERSIONS`, minus ``keep`` (what the current root uses)."""
    kept = set(keep)
    return [version for version in newest_first(versions)[MAX_VERSIONS:] if version not in kept]


def changed_apps(previous: RootGroup | None, root: RootGroup) -> list[App]:
    """Apps of ``root`` that ``previous`` did not hold as they are now: each needs its version entry written."""
    before = previous.apps if previous is not None else {}
    return [app for app_id, app in sorted(root.apps.items()) if before.get(app_id) != app]


def app_version_of(app: App) -> str:
    """The version an app is stored under (its ``version``; an app the server never versioned gets ``""``)."""
    return app.version or ""


# --- records: what is on disk -----------------------------------------------------------------------------------


class Record(msgspec.Struct, kw_only=True):
    """Base of the stored records: snake_case keys, unknown keys ignored (a newer Butte may add some)."""


class GroupRecord(Record):
    version: str
    dependencies: tuple[str, ...] = ()


class RootRecord(Record):
    version: str = ""
    apps: dict[str, App] = {}
    groups: dict[str, GroupRecord] = {}


class HealthRecord(Record):
    alive: bool
    consecutive_failures: int = 0
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str | None = None


class InstanceRecord(Record):
    task_id: str
    app_id: str
    version: str
    config_version: str
    agent_id: str
    host: str
    staged_at: float
    ports: tuple[int, ...] = ()
    state: str = "TASK_STAGING"
    started_at: float | None = None
    health: HealthRecord | None = None
    ready: bool | None = None
    unreachable_since: float | None = None
    killing: bool = False
    attributes: dict[str, str] = {}
    message: str | None = None


class ActionRecord(Record):
    kind: ActionKind
    app_id: str


class DeploymentRecord(Record):
    id: str
    version: str
    original: RootRecord
    target: RootRecord
    steps: tuple[tuple[ActionRecord, ...], ...]
    current_step: int = 0


def root_record(root: RootGroup) -> RootRecord:
    groups = {gid: GroupRecord(version=g.version, dependencies=g.dependencies) for gid, g in root.groups.items()}
    return RootRecord(version=root.version, apps=dict(root.apps), groups=groups)


def root_from(record: RootRecord) -> RootGroup:
    groups = {gid: GroupMeta(version=g.version, dependencies=g.dependencies) for gid, g in record.groups.items()}
    return RootGroup(apps=dict(record.apps), groups=groups, version=record.version)


def instance_record(instance: Instance) -> InstanceRecord:
    health = instance.health
    return InstanceRecord(
        task_id=instance.task_id,
        app_id=instance.app_id,
        version=instance.version,
        config_version=instance.config_version,
        agent_id=instance.agent_id,
        host=instance.host,
        staged_at=instance.staged_at,
        ports=instance.ports,
        state=instance.state,
        started_at=instance.started_at,
        health=None if health is None else health_record(health),
        ready=instance.ready,
        unreachable_since=instance.unreachable_since,
        killing=instance.killing,
        attributes=dict(instance.attributes),
        message=instance.message,
    )


def instance_from(record: InstanceRecord) -> Instance:
    return Instance(
        task_id=record.task_id,
        app_id=record.app_id,
        version=record.version,
        config_version=record.config_version,
        agent_id=record.agent_id,
        host=record.host,
        staged_at=record.staged_at,
        ports=record.ports,
        state=record.state,
        started_at=record.started_at,
        health=None if record.health is None else health_from(record.health),
        ready=record.ready,
        unreachable_since=record.unreachable_since,
        killing=record.killing,
        attributes=dict(record.attributes),
        message=record.message,
    )


def health_record(health: HealthResult) -> HealthRecord:
    return HealthRecord(
        alive=health.alive,
        consecutive_failures=health.consecutive_failures,
        first_success=health.first_success,
        last_success=health.last_success,
        last_failure=health.last_failure,
        last_failure_cause=health.last_failure_cause,
    )


def health_from(record: HealthRecord) -> HealthResult:
    return HealthResult(
        alive=record.alive,
        consecutive_failures=record.consecutive_failures,
        first_success=record.first_success,
        last_success=record.last_success,
        last_failure=record.last_failure,
        last_failure_cause=record.last_failure_cause,
    )


def deployment_record(plan: DeploymentPlan, current_step: int) -> DeploymentRecord:
    steps = tuple(tuple(ActionRecord(kind=a.kind, app_id=a.app_id) for a in step.actions) for step in plan.steps)
    return DeploymentRecord(
        id=plan.id,
        version=plan.version,
        original=root_record(plan.original),
        target=root_record(plan.target),
        steps=steps,
        current_step=current_step,
    )


def deployment_from(record: DeploymentRecord) -> tuple[DeploymentPlan, int]:
    steps = tuple(Step(actions=tuple(Action(kind=a.kind, app_id=a.app_id) for a in step)) for step in record.steps)
    plan = DeploymentPlan(
        id=record.id,
        version=record.version,
        original=root_from(record.original),
        target=root_from(record.target),
        steps=steps,
    )
    return plan, record.current_step


# --- codec: bytes <-> core values -------------------------------------------------------------------------------

_encoder: Final = msgspec.json.Encoder()
_app_decoder: Final = msgspec.json.Decoder(App)
_root_decoder: Final = msgspec.json.Decoder(RootRecord)
_instance_decoder: Final = msgspec.json.Decoder(InstanceRecord)
_deployment_decoder: Final = msgspec.json.Decoder(DeploymentRecord)


def encode_app(app: App) -> bytes:
    return _encoder.encode(app)


def decode_app(data: bytes) -> App:
    """An app as stored.

    Raises:
        msgspec.DecodeError: not a stored app.
    """
    return _app_decoder.decode(data)


def encode_root(root: RootGroup) -> bytes:
    return _encoder.encode(root_record(root))


def decode_root(data: bytes) -> RootGroup:
    """A root group as stored.

    Raises:
        msgspec.DecodeError: not a stored root group.
    """
    return root_from(_root_decoder.decode(data))


def encode_instance(instance: Instance) -> bytes:
    return _encoder.encode(instance_record(instance))


def decode_instance(data: bytes) -> Instance:
    """An instance as stored.

    Raises:
        msgspec.DecodeError: not a stored instance.
    """
    return instance_from(_instance_decoder.decode(data))


def encode_deployment(plan: DeploymentPlan, current_step: int) -> bytes:
    return _encoder.encode(deployment_record(plan, current_step))


def decode_deployment(data: bytes) -> tuple[DeploymentPlan, int]:
    """A running deployment and the index of its current step, as stored.

    Raises:
        msgspec.DecodeError: not a stored deployment.
    """
    return deployment_from(_deployment_decoder.decode(data))


def stored_state(
    framework_id: str | None,
    root: RootGroup | None,
    deployments: Iterable[tuple[DeploymentPlan, int]],
    instances: Iterable[Instance],
) -> StoredState:
    """A :class:`StoredState` in a stable order: deployments by (version, id), instances by task id."""
    return StoredState(
        framework_id=framework_id,
        root=root if root is not None else RootGroup(),
        deployments=tuple(sorted(deployments, key=lambda d: (version_key(d[0].version), d[0].id))),
        instances=tuple(sorted(instances, key=lambda i: i.task_id)),
    )


# --- the worker thread ------------------------------------------------------------------------------------------


@final
class SerialWorker:
    """One thread that runs a store's blocking calls one at a time, in the order they were submitted."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """Run ``call(*args)`` on the worker thread and wait for its result.

        Raises:
            Exception: whatever ``call`` raised.
        """
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(call, *args))

    async def close(self, last: Callable[[], object]) -> None:
        """Run ``last`` after everything already submitted, then stop the thread."""
        try:
            await self.run(last)
        finally:
            self._pool.shutdown(wait=False)
