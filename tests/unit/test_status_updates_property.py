"""Property: any interleaving of updates, acks, lost messages, reconnects and time → in order, at least once."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from butte.agent.status_updates import Effect, ForwardUpdate, StatusUpdateManager
from butte.wire.base import ID
from butte.wire.mesos import TaskState, TaskStatus

TASKS = ("a", "b", "c")
STATES: tuple[TaskState, ...] = ("TASK_STARTING", "TASK_RUNNING", "TASK_RUNNING", "TASK_FINISHED")

Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.integers(0, len(TASKS) - 1)),
        st.tuples(st.just("deliver"), st.integers(0, 20)),  # the master relays one forwarded update
        st.tuples(st.just("drop"), st.integers(0, 20)),  # a forwarded update is lost on the way
        st.tuples(st.just("ack_again"), st.integers(0, 20)),  # a late duplicate of an ack comes in
        st.tuples(st.just("tick"), st.integers(1, 700)),
        st.tuples(st.just("reconnect"), st.just(0)),
    ),
    max_size=80,
)


@dataclass
class World:
    manager: StatusUpdateManager = field(default_factory=StatusUpdateManager)
    now: float = 0.0
    sent: dict[str, list[str]] = field(default_factory=lambda: {task: [] for task in TASKS})
    in_flight: list[ForwardUpdate] = field(default_factory=list)
    framework_saw: dict[str, list[str]] = field(default_factory=lambda: {task: [] for task in TASKS})

    def apply(self, effects: list[Effect]) -> None:
        self.in_flight.extend(effect for effect in effects if isinstance(effect, ForwardUpdate))

    def add_update(self, task_index: int) -> None:
        task = TASKS[task_index]
        count = len(self.sent[task])
        if count >= len(STATES):
            return
        uuid = f"{task}{count}"
        self.sent[task].append(uuid)
        update = TaskStatus(task_id=ID(value=task), state=STATES[count], uuid=uuid)
        self.apply(self.manager.update("f", update, self.now))

    def deliver(self, index: int) -> None:
        if not self.in_flight:
            return
        forwarded = self.in_flight.pop(index % len(self.in_flight))
        self.framework_saw[forwarded.task_id].append(forwarded.uuid)
        # The framework acknowledges whatever it receives (implicit acknowledgements).
        self.apply(self.manager.acknowledge("f", forwarded.task_id, forwarded.uuid, self.now))

    def step(self, kind: str, value: int) -> None:
        if kind == "update":
            self.add_update(value)
        elif kind == "deliver":
            self.deliver(value)
        elif kind == "drop" and self.in_flight:
            self.in_flight.pop(value % len(self.in_flight))
        elif kind == "ack_again":
            task = TASKS[value % len(TASKS)]
            seen = self.framework_saw[task]
            if seen:
                self.apply(self.manager.acknowledge("f", task, seen[value % len(seen)], self.now))
        elif kind == "tick":
            self.now += value
            self.apply(self.manager.tick(self.now))
        elif kind == "reconnect":
            self.manager.pause()
            self.in_flight.clear()  # the old connection's messages are gone
            self.apply(self.manager.resume(self.now))

    def drain(self) -> None:
        """No more faults: deliver everything, advancing time so that retries fire."""
        for _ in range(200):
            while self.in_flight:
                self.deliver(0)
            due = self.manager.next_retry_at()
            if due is None:
                return
            self.now = max(self.now, due)
            self.apply(self.manager.tick(self.now))


@settings(max_examples=300, deadline=None)
@given(steps)
def test_every_task_sees_its_updates_in_order_at_least_once(plan: list[Step]) -> None:
    world = World()
    world.apply(world.manager.resume(0.0))
    for kind, value in plan:
        world.step(kind, value)
    world.drain()
    for task in TASKS:
        first_seen = list(dict.fromkeys(world.framework_saw[task]))
        assert first_seen == world.sent[task], (task, world.framework_saw[task])
        # Nothing newer than an unacknowledged update ever reached the framework.
        for seen_index, uuid in enumerate(world.framework_saw[task]):
            earlier = world.sent[task][: world.sent[task].index(uuid)]
            assert set(earlier) <= set(world.framework_saw[task][:seen_index])
    assert world.manager.snapshot().pending_updates == 0
