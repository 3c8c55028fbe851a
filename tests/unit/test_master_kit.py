"""Builders shared by the master core tests (no tests here).

:class:`Master` wraps a :class:`MasterState` with a fixed seed and a clock the test moves by hand; every
helper returns the effects the core produced, and the ``to_framework``/``to_agent``/``updates`` filters
pick the events a test wants to look at.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Iterable, Sequence

from butte.core.resources import Resources
from butte.master import agents, frameworks, launch, offers, tasks
from butte.master.effects import Effect, SendToAgent, SendToFramework
from butte.master.model import Framework, Task
from butte.master.state import MasterConfig, MasterState
from butte.wire import mesos
from butte.wire.agent_link import AgentEvent
from butte.wire.base import ID
from butte.wire.resources import resources_to_wire
from butte.wire.scheduler import Accept, Event, Subscribe

MASTER_ID = "M"
AGENT_RESOURCES = "cpus:4;mem:4096;disk:1000;ports:[31000-32000]"
START = 1000.0


def ident(value: str) -> ID:
    return ID(value=value)


def make_config(**overrides: object) -> MasterConfig:
    fields: dict[str, object] = {"master_id": MASTER_ID, "ip": "127.0.0.1", "port": 5050, "hostname": "localhost"}
    fields.update(overrides)
    return MasterConfig(**fields)  # type: ignore[arg-type]


def framework_info(
    name: str = "fw",
    *,
    user: str = "alice",
    role: str | None = None,
    roles: Sequence[str] = (),
    capabilities: Sequence[str] = (),
    failover_timeout: float = 0.0,
    framework_id: str | None = None,
    principal: str | None = None,
    checkpoint: bool = False,
) -> mesos.FrameworkInfo:
    return mesos.FrameworkInfo(
        user=user,
        name=name,
        id=ident(framework_id) if framework_id else None,
        failover_timeout=failover_timeout,
        checkpoint=checkpoint,
        role=role,
        roles=list(roles),
        principal=principal,
        capabilities=[mesos.Capability(type=c) for c in capabilities],
    )


def wire(text: str) -> list[mesos.Resource]:
    return resources_to_wire(Resources.parse(text)) if text else []


def command_task(
    task_id: str, agent_id: str, resources: str = "cpus:1;mem:128", command: str | None = "sleep 1"
) -> mesos.TaskInfo:
    return mesos.TaskInfo(
        name=task_id,
        task_id=ident(task_id),
        agent_id=ident(agent_id),
        resources=wire(resources),
        command=mesos.CommandInfo(value=command) if command is not None else None,
    )


def executor_info(executor_id: str, resources: str = "cpus:0.5;mem:64", kind: str | None = None) -> mesos.ExecutorInfo:
    return mesos.ExecutorInfo(
        executor_id=ident(executor_id),
        type=kind,  # type: ignore[arg-type]
        command=mesos.CommandInfo(value="./executor"),
        resources=wire(resources),
    )


def executor_task(
    task_id: str, agent_id: str, executor: mesos.ExecutorInfo, resources: str = "cpus:1;mem:128"
) -> mesos.TaskInfo:
    return mesos.TaskInfo(
        name=task_id,
        task_id=ident(task_id),
        agent_id=ident(agent_id),
        resources=wire(resources),
        executor=executor,
    )


def group_task(task_id: str, agent_id: str, resources: str = "cpus:1;mem:128") -> mesos.TaskInfo:
    return command_task(task_id, agent_id, resources)


def launch_op(*infos: mesos.TaskInfo) -> mesos.OfferOperation:
    return mesos.OfferOperation(type="LAUNCH", launch=mesos.Launch(task_infos=list(infos)))


def launch_group_op(executor: mesos.ExecutorInfo, *infos: mesos.TaskInfo) -> mesos.OfferOperation:
    group = mesos.LaunchGroup(executor=executor, task_group=mesos.TaskGroupInfo(tasks=list(infos)))
    return mesos.OfferOperation(type="LAUNCH_GROUP", launch_group=group)


def to_framework(effects: Iterable[Effect], framework_id: str | None = None, kind: str | None = None) -> list[Event]:
    return [
        e.event
        for e in effects
        if isinstance(e, SendToFramework)
        and (framework_id is None or e.framework_id == framework_id)
        and (kind is None or e.event.type == kind)
    ]


def to_agent(effects: Iterable[Effect], agent_id: str | None = None, kind: str | None = None) -> list[AgentEvent]:
    return [
        e.event
        for e in effects
        if isinstance(e, SendToAgent)
        and (agent_id is None or e.agent_id == agent_id)
        and (kind is None or e.event.type == kind)
    ]


def updates(effects: Iterable[Effect], framework_id: str | None = None) -> list[mesos.TaskStatus]:
    return [e.update.status for e in to_framework(effects, framework_id, "UPDATE") if e.update is not None]


def offers_in(effects: Iterable[Effect], framework_id: str | None = None) -> list[mesos.Offer]:
    return [o for e in to_framework(effects, framework_id, "OFFERS") if e.offers is not None for o in e.offers.offers]


def resources_of(offer: mesos.Offer) -> Resources:
    from butte.wire.resources import resources_from_wire

    return resources_from_wire(offer.resources)


class Master:
    """A master core driven by hand: a fixed seed, a clock at ``now`` that tests move, no shell."""

    def __init__(self, seed: int = 0, **overrides: object) -> None:
        self.state = MasterState(make_config(**overrides), random.Random(seed), start_time=START)
        self.now = START
        self._streams = itertools.count()
        self._uuids = random.Random(seed + 1)

    # ---- frameworks ----

    def new_stream(self) -> str:
        return f"stream-{next(self._streams)}"

    def subscribe(
        self, info: mesos.FrameworkInfo | None = None, *, suppressed: Sequence[str] = (), stream: str | None = None
    ) -> tuple[str, list[Effect]]:
        call = Subscribe(framework_info=info or framework_info(), suppressed_roles=list(suppressed))
        return frameworks.subscribe(self.state, call, stream or self.new_stream(), self.now)

    def framework(self, framework_id: str) -> Framework:
        return self.state.frameworks[framework_id]

    def disconnect(self, framework_id: str) -> list[Effect]:
        framework = self.framework(framework_id)
        return frameworks.disconnect(self.state, framework_id, framework.stream_id, self.now)

    # ---- agents ----

    def add_agent(self, resources: str = AGENT_RESOURCES, hostname: str = "node1") -> str:
        agent_id = self.state.new_agent_id()
        info = mesos.AgentInfo(hostname=hostname, port=5051, resources=wire(resources))
        agents.admit(self.state, agent_id, info, "127.0.0.2", self.new_stream(), self.now)
        return agent_id

    # ---- offers ----

    def allocate(self) -> list[Effect]:
        return offers.make_offers(self.state, self.state.allocator.allocate(self.now), self.now)

    def offer(self, framework_id: str) -> mesos.Offer:
        """Allocate and return the single offer the framework got."""
        made = offers_in(self.allocate(), framework_id)
        assert len(made) == 1, made
        return made[0]

    def accept(
        self,
        framework_id: str,
        offer_ids: Sequence[str],
        *operations: mesos.OfferOperation,
        refuse_seconds: float | None = None,
    ) -> list[Effect]:
        filters = mesos.Filters(refuse_seconds=refuse_seconds) if refuse_seconds is not None else None
        call = Accept(offer_ids=[ident(o) for o in offer_ids], operations=list(operations), filters=filters)
        return launch.accept(self.state, self.framework(framework_id), call, self.now)

    def launch(self, framework_id: str, *infos: mesos.TaskInfo) -> list[Effect]:
        """Allocate, take the framework's single offer and launch the tasks on it."""
        offer = self.offer(framework_id)
        return self.accept(framework_id, [offer.id.value], launch_op(*infos))

    def decline(self, framework_id: str, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> list[Effect]:
        filters = mesos.Filters(refuse_seconds=refuse_seconds) if refuse_seconds is not None else None
        return offers.decline(self.state, self.framework(framework_id), list(offer_ids), filters, self.now)

    # ---- tasks ----

    def new_uuid(self) -> str:
        return base64.b64encode(self._uuids.randbytes(16)).decode()

    def agent_update(
        self, agent_id: str, framework_id: str, task_id: str, state: str, *, uuid: str | None = None
    ) -> tuple[str, list[Effect]]:
        """The agent forwards a status update (with a fresh uuid unless one is given)."""
        uuid = uuid or self.new_uuid()
        status = mesos.TaskStatus(
            task_id=ident(task_id),
            state=state,  # type: ignore[arg-type]
            source="SOURCE_EXECUTOR",
            uuid=uuid,
            timestamp=self.now,
        )
        return uuid, tasks.on_agent_update(self.state, agent_id, framework_id, status, self.now)

    def ack(self, framework_id: str, agent_id: str, task_id: str, uuid: str) -> list[Effect]:
        return tasks.acknowledge(self.state, self.framework(framework_id), agent_id, task_id, uuid, self.now)

    def task(self, framework_id: str, task_id: str) -> Task:
        task = self.state.find_task(framework_id, task_id)
        assert task is not None, f"no active task {task_id}"
        return task

    def completed(self, framework_id: str) -> dict[str, str]:
        framework = self.state.frameworks.get(framework_id)
        if framework is None:
            framework = next(f for f in self.state.completed_frameworks if f.id == framework_id)
        return {t.id: t.state for t in framework.completed_tasks}

    def available(self, agent_id: str) -> Resources:
        return self.state.allocator.available(agent_id)
