"""Registry GC of unreachable and gone agents: the selection, the SQLite registry's marks, the master's books."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from test_master_kit import Master, command_task, framework_info, ident, to_agent, updates, wire

from butte.master import agents, tasks, unreachable
from butte.master.model import AgentLink
from butte.master.registry.sqlite import SqliteRegistry
from butte.master.registry_gc import PRUNABLE_STATES, AgentMark, select_prunable
from butte.wire import mesos
from butte.wire.agent_link import Reregister

DAY_S = 24 * 3600.0
marks_strategy = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=4),
    st.builds(
        AgentMark,
        st.sampled_from(["admitted", *PRUNABLE_STATES]),
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    ),
    max_size=30,
)


def _time(mark: AgentMark, unknown: float) -> float:
    return unknown if mark.marked_at is None else mark.marked_at


@given(marks_strategy, st.floats(0, 200), st.floats(0, 100), st.integers(0, 10), st.floats(0, 100))
def test_gc_prunes_oldest_first_never_a_reachable_agent_and_keeps_at_most_max_count(
    marks: dict[str, AgentMark], now: float, max_age_s: float, max_count: int, unknown: float
) -> None:
    chosen = set(select_prunable(marks, now, max_age_s, max_count, unknown_time=unknown))
    assert all(marks[agent_id].state in PRUNABLE_STATES for agent_id in chosen)
    for state in PRUNABLE_STATES:
        listed = sorted((_time(m, unknown), agent_id) for agent_id, m in marks.items() if m.state == state)
        pruned = [agent_id in chosen for _, agent_id in listed]
        assert pruned == sorted(pruned, reverse=True)  # a prefix of the list, oldest first
        assert len(listed) - sum(pruned) <= max_count
        kept = [marked_at for marked_at, agent_id in listed if agent_id not in chosen]
        assert all(now - marked_at <= max_age_s for marked_at in kept)
        # Nothing more than age or count asks for: the older of the two prefixes.
        too_old = sum(1 for marked_at, _ in listed if now - marked_at > max_age_s)
        assert sum(pruned) == max(len(listed) - max_count, too_old, 0)


def test_age_follows_mesos_registry_gc_by_age_schedule() -> None:
    # Mesos RegistryGcByAge: max age 20 min; agents marked at 76 s and 720 s; GC at 15, 30 and 45 minutes.
    marks = {"s1": AgentMark("unreachable", 76.0), "s2": AgentMark("unreachable", 720.0)}
    chosen = [select_prunable(marks, at_s, 1200.0, 100, unknown_time=0.0) for at_s in (900.0, 1800.0, 2700.0)]
    assert chosen == [[], ["s1"], ["s1", "s2"]]


def test_count_keeps_the_most_recent_of_each_list() -> None:
    marks = {f"u{i}": AgentMark("unreachable", float(i)) for i in range(5)}
    marks |= {"g0": AgentMark("gone", 0.0), "g1": AgentMark("gone", 1.0), "a0": AgentMark("admitted")}
    assert select_prunable(marks, 10.0, DAY_S, 1, unknown_time=0.0) == ["g0", "u0", "u1", "u2", "u3"]


def test_a_mark_without_a_time_ages_from_the_stand_in() -> None:
    marks = {"old": AgentMark("unreachable", None)}
    assert select_prunable(marks, 100.0, 50.0, 10, unknown_time=60.0) == []
    assert select_prunable(marks, 111.0, 50.0, 10, unknown_time=60.0) == ["old"]


# ---- the SQLite registry ----


def test_sqlite_marks_carry_their_time_and_admission_clears_it(tmp_path: Path) -> None:
    now = [10.0]
    registry = SqliteRegistry(tmp_path / "registry.db", clock=lambda: now[0])
    for agent_id in ("a", "b", "c"):
        registry.admit(agent_id, b'{"hostname": "h"}')
    registry.mark("a", "unreachable")
    now[0] = 20.0
    registry.mark("b", "gone")
    assert registry.marked_agents() == {"a": AgentMark("unreachable", 10.0), "b": AgentMark("gone", 20.0)}
    registry.admit("a", b'{"hostname": "h"}')
    assert registry.marked_agents() == {"b": AgentMark("gone", 20.0)}
    assert registry.prune(["a", "b", "c", "unknown"]) == ["b"]
    assert registry.state_of("a") == registry.state_of("c") == "admitted" and registry.state_of("b") is None


def test_sqlite_registry_written_before_marks_had_times_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    old = sqlite3.connect(str(path))
    old.execute("CREATE TABLE agents (id TEXT PRIMARY KEY, info TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'admitted')")
    old.execute("""INSERT INTO agents VALUES ('x', '{"hostname": "h"}', 'unreachable')""")
    old.commit()
    old.close()
    registry = SqliteRegistry(path, clock=lambda: 5.0)
    assert registry.agents() == {"x": ("unreachable", {"hostname": "h"})}
    assert registry.marked_agents() == {"x": AgentMark("unreachable", None)}
    registry.mark("x", "gone")
    assert registry.marked_agents() == {"x": AgentMark("gone", 5.0)}


# ---- the master's books ----


def _unreachable_agent(master: Master, registry: SqliteRegistry) -> tuple[str, str]:
    """An agent with task t1 RUNNING for a partition-aware framework, then marked unreachable (registry first)."""
    agent_id = master.add_agent()
    registry.admit(agent_id, b'{"hostname": "node1"}')
    framework_id, _ = master.subscribe(framework_info(capabilities=("PARTITION_AWARE",)))
    master.launch(framework_id, command_task("t1", agent_id))
    master.agent_update(agent_id, framework_id, "t1", "TASK_RUNNING")
    registry.mark(agent_id, "unreachable")
    unreachable.mark_unreachable(master.state, agent_id, master.now)
    return agent_id, framework_id


def _report(agent_id: str, framework_id: str) -> Reregister:
    task = mesos.Task(
        name="t1",
        task_id=ident("t1"),
        framework_id=ident(framework_id),
        agent_id=ident(agent_id),
        state="TASK_RUNNING",
        resources=wire("cpus:1;mem:128"),
    )
    info = mesos.AgentInfo(hostname="node1", port=5051, resources=wire("cpus:4;mem:4096"), id=ident(agent_id))
    return Reregister(agent_info=info, tasks=[task])


def _reregister(master: Master, registry: SqliteRegistry, agent_id: str, framework_id: str) -> None:
    registry.admit(agent_id, b'{"hostname": "node1"}')  # the shell writes the registry first
    effects = agents.readmit(master.state, _report(agent_id, framework_id), "127.0.0.2", "s9", master.now)
    assert to_agent(effects, agent_id, "KILL_TASK") == []


def _consistent(master: Master, registry: SqliteRegistry, agent_id: str) -> str | None:
    """The agent's registry state, once checked against the master's books."""
    agent = master.state.agents.get(agent_id)
    in_books = None if agent is None else {AgentLink.UNREACHABLE: "unreachable"}.get(agent.link, "admitted")
    assert registry.state_of(agent_id) == in_books
    return in_books


def test_pruned_agent_and_its_unreachable_tasks_are_forgotten_and_reconcile_unknown(tmp_path: Path) -> None:
    master, registry = Master(), SqliteRegistry(tmp_path / "registry.db")
    agent_id, framework_id = _unreachable_agent(master, registry)
    assert unreachable.forget_pruned(master.state, registry.prune([agent_id])) == [agent_id]
    framework = master.framework(framework_id)
    assert agent_id not in master.state.agents and framework.tasks == {}
    (answer,) = updates(tasks.reconcile(master.state, framework, [("t1", agent_id)], master.now))
    assert answer.state == "TASK_UNKNOWN"
    assert updates(tasks.reconcile(master.state, framework, [], master.now)) == []
    # Mesos >= 1.5: the agent is admitted again with what it reports; nothing is killed.
    _reregister(master, registry, agent_id, framework_id)
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"
    assert _consistent(master, registry, agent_id) == "admitted"


def test_checklist_b21_gc_racing_a_reregistration_keeps_the_agent(tmp_path: Path) -> None:
    """Checklist B21 (Mesos ``RegistryGcRace``): the agent reregisters between the selection and the prune."""
    master, registry = Master(), SqliteRegistry(tmp_path / "registry.db")
    agent_id, framework_id = _unreachable_agent(master, registry)
    chosen = select_prunable(registry.marked_agents(), 10.0, 0.0, 0, unknown_time=0.0)
    assert chosen == [agent_id]
    _reregister(master, registry, agent_id, framework_id)
    pruned = registry.prune(chosen)
    assert pruned == [] and unreachable.forget_pruned(master.state, pruned) == []
    assert _consistent(master, registry, agent_id) == "admitted"
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"


def test_checklist_b21_reregistration_right_after_the_prune_is_admitted_afresh(tmp_path: Path) -> None:
    """Checklist B21, the other order: the prune lands first, the agent comes back as an unknown one."""
    master, registry = Master(), SqliteRegistry(tmp_path / "registry.db")
    agent_id, framework_id = _unreachable_agent(master, registry)
    chosen = select_prunable(registry.marked_agents(), 10.0, 0.0, 0, unknown_time=0.0)
    unreachable.forget_pruned(master.state, registry.prune(chosen))
    assert _consistent(master, registry, agent_id) is None
    _reregister(master, registry, agent_id, framework_id)
    assert _consistent(master, registry, agent_id) == "admitted"
    assert master.task(framework_id, "t1").state == "TASK_RUNNING"
