"""Next moves for one app: scaling, rolling restarts (Marathon's TaskReplaceActor), stops, and upkeep."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butte.frameworks.marathon.model import HealthResult, Instance
from butte.frameworks.marathon.replace import (
    Moves,
    is_alive,
    is_ready,
    kill_order,
    maintain,
    next_moves,
    restart_bounds,
)
from butte.wire.marathon import App, HealthCheck, ReadinessCheck, UpgradeStrategy, VersionInfo

HEALTHY = HealthResult(alive=True)


def make_app(
    instances: int,
    *,
    min_health: float = 1.0,
    over: float = 1.0,
    health: bool = False,
    readiness: bool = False,
    kill_selection: str = "YOUNGEST_FIRST",
) -> App:
    return App(
        id="/web",
        cmd="serve",
        instances=instances,
        upgrade_strategy=UpgradeStrategy(minimum_health_capacity=min_health, maximum_over_capacity=over),
        health_checks=[HealthCheck(protocol="COMMAND")] if health else [],
        readiness_checks=[ReadinessCheck()] if readiness else [],
        kill_selection="OLDEST_FIRST" if kill_selection == "OLDEST_FIRST" else "YOUNGEST_FIRST",
        version="v2",
        version_info=VersionInfo(last_scaling_at="v2", last_config_change_at="v2"),
    )


def inst(
    task_id: str, *, config: str = "v2", state: str = "TASK_RUNNING", staged_at: float = 0.0, **kw: object
) -> Instance:
    base = Instance(
        task_id=task_id,
        app_id="/web",
        version=config,
        config_version=config,
        agent_id="a1",
        host="h1",
        staged_at=staged_at,
        state=state,
        health=HEALTHY,
        ready=True,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def olds(count: int) -> list[Instance]:
    return [inst(f"old{n}", config="v1", staged_at=float(n)) for n in range(count)]


# --- readiness and ordering -------------------------------------------------------------------------------


def test_ready_needs_running_health_and_readiness() -> None:
    checked = make_app(1, health=True, readiness=True)
    assert is_ready(checked, inst("a"))
    assert not is_ready(checked, inst("a", state="TASK_STAGING"))
    assert not is_ready(checked, inst("a", health=None))
    assert not is_ready(checked, inst("a", health=HealthResult(alive=False)))
    assert not is_ready(checked, inst("a", ready=None))
    assert not is_ready(checked, inst("a", killing=True))
    assert is_ready(make_app(1), inst("a", health=None, ready=None))


def test_alive_excludes_killing_and_terminal() -> None:
    assert is_alive(inst("a", state="TASK_STAGING"))
    assert is_alive(inst("a", state="TASK_UNREACHABLE", unreachable_since=5.0))
    assert not is_alive(inst("a", killing=True))
    assert not is_alive(inst("a", state="TASK_KILLING"))
    assert not is_alive(inst("a", state="TASK_FAILED"))


def test_kill_order_unreachable_staging_starting_then_running_youngest_first() -> None:
    instances = [
        inst("run-old", staged_at=1.0),
        inst("run-young", staged_at=9.0),
        inst("starting", state="TASK_STARTING", staged_at=2.0),
        inst("staging", state="TASK_STAGING", staged_at=3.0),
        inst("away", state="TASK_UNREACHABLE", staged_at=0.5, unreachable_since=10.0),
    ]
    order = [i.task_id for i in kill_order(make_app(1), instances)]
    assert order == ["away", "staging", "starting", "run-young", "run-old"]
    oldest = [i.task_id for i in kill_order(make_app(1, kill_selection="OLDEST_FIRST"), instances)]
    assert oldest == ["away", "staging", "starting", "run-old", "run-young"]


# --- start and scale --------------------------------------------------------------------------------------


def test_scale_up_launches_the_missing_and_waits_for_ready() -> None:
    app = make_app(3, health=True)
    assert next_moves("StartApplication", app, []) == Moves(launch=3, kill=(), done=False)
    staging = [inst(f"n{n}", state="TASK_STAGING", health=None) for n in range(3)]
    assert next_moves("ScaleApplication", app, staging) == Moves(launch=0, kill=(), done=False)
    running = [inst(f"n{n}") for n in range(3)]
    assert next_moves("ScaleApplication", app, running) == Moves(launch=0, kill=(), done=True)


def test_scale_replaces_a_killed_instance() -> None:
    instances = [inst("a"), inst("b", killing=True)]
    assert next_moves("ScaleApplication", make_app(2), instances) == Moves(launch=1, kill=(), done=False)


def test_scale_down_kills_surplus_in_kill_order_then_waits_for_the_kills() -> None:
    instances = [inst("r1", staged_at=1.0), inst("r2", staged_at=2.0), inst("s", state="TASK_STAGING")]
    moves = next_moves("ScaleApplication", make_app(1), instances)
    assert moves == Moves(launch=0, kill=("s", "r2"), done=False)
    killed = [dataclasses.replace(i, killing=i.task_id in moves.kill) for i in instances]
    assert next_moves("ScaleApplication", make_app(1), killed) == Moves(launch=0, kill=(), done=False)
    assert next_moves("ScaleApplication", make_app(1), killed[:1]) == Moves(launch=0, kill=(), done=True)


def test_scale_to_zero() -> None:
    assert next_moves("ScaleApplication", make_app(0), [inst("a")]) == Moves(launch=0, kill=("a",), done=False)
    assert next_moves("ScaleApplication", make_app(0), []) == Moves(launch=0, kill=(), done=True)


# --- stop -------------------------------------------------------------------------------------------------


def test_stop_kills_every_alive_instance_and_ends_when_none_is_left() -> None:
    instances = [inst("b"), inst("a", state="TASK_STAGING"), inst("c", killing=True)]
    assert next_moves("StopApplication", make_app(2), instances) == Moves(launch=0, kill=("a", "b"), done=False)
    assert next_moves("StopApplication", make_app(2), instances[2:]) == Moves(launch=0, kill=(), done=False)
    assert next_moves("StopApplication", make_app(2), []) == Moves(launch=0, kill=(), done=True)


# --- restart: Marathon's examples (A6) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "min_health", "over", "kills", "launch"),
    [
        (3, 1.0, 1.0, 0, 3),  # (1, 1): all new next to the old first
        (3, 1.0, 0.0, 0, 1),  # (1, 0): one at a time, thanks to the extra instance
        (4, 0.5, 0.0, 2, 0),  # (0.5, 0): half at once; new ones once the killed have ended
        (3, 0.0, 0.0, 3, 0),  # (0, x): everything first
        (3, 0.0, 1.0, 3, 3),
    ],
)
def test_restart_first_moves(count: int, min_health: float, over: float, kills: int, launch: int) -> None:
    moves = next_moves("RestartApplication", make_app(count, min_health=min_health, over=over), olds(count))
    assert (len(moves.kill), moves.launch, moves.done) == (kills, launch, False)


def test_restart_kills_youngest_old_first_by_default() -> None:
    moves = next_moves("RestartApplication", make_app(4, min_health=0.5, over=0.0), olds(4))
    assert moves.kill == ("old3", "old2")


def test_restart_kills_unready_old_first_and_for_free() -> None:
    instances = [*olds(2), inst("old-sick", config="v1", staged_at=0.0, health=HealthResult(alive=False))]
    moves = next_moves("RestartApplication", make_app(3, min_health=1.0, over=0.0, health=True), instances)
    # The sick one goes first; it holds its room (3 + the extra one) until Mesos reports it ended.
    assert moves == Moves(launch=1, kill=("old-sick",), done=False)


def test_restart_new_ready_lets_an_old_one_go() -> None:
    app = make_app(2, min_health=1.0, over=0.0)
    instances = [*olds(2), inst("new0")]
    assert next_moves("RestartApplication", app, instances) == Moves(launch=0, kill=("old1",), done=False)
    assert next_moves("RestartApplication", app, [olds(2)[0], instances[2]]).launch == 1


def test_restart_done_only_when_all_new_ready_and_old_gone() -> None:
    app = make_app(2, health=True)
    assert next_moves("RestartApplication", app, [inst("n1"), inst("n2")]).done
    assert not next_moves("RestartApplication", app, [inst("n1"), inst("n2", health=None)]).done
    assert not next_moves(
        "RestartApplication", app, [inst("n1"), inst("n2"), inst("o", config="v1", killing=True)]
    ).done


def test_restart_kills_surplus_new_instances() -> None:
    app = make_app(1, min_health=1.0, over=0.0)
    moves = next_moves("RestartApplication", app, [inst("n1", staged_at=1.0), inst("n2", staged_at=2.0)])
    assert moves == Moves(launch=0, kill=("n2",), done=False)


def test_restart_bounds_round_float_products() -> None:
    bounds = restart_bounds(make_app(10, min_health=0.7, over=0.1), old_alive=False)
    assert (bounds.min_healthy, bounds.max_capacity) == (7, 11)
    assert restart_bounds(make_app(2, min_health=1.0, over=0.0), old_alive=True).max_capacity == 3
    assert restart_bounds(make_app(2, min_health=1.0, over=0.0), old_alive=False).max_capacity == 2


def test_restart_with_fewer_instances_than_before() -> None:
    moves = next_moves("RestartApplication", make_app(2, min_health=1.0, over=1.0), olds(5))
    assert (len(moves.kill), moves.launch) == (3, 0)  # the five still hold maxCapacity until they end


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown"):
        next_moves("Nope", make_app(1), [])  # type: ignore[arg-type]


# --- maintain ---------------------------------------------------------------------------------------------


def test_maintain_replaces_inactive_unreachable_instances() -> None:
    away = inst("away", state="TASK_UNREACHABLE", unreachable_since=1.0)
    assert maintain(make_app(2), [inst("a"), away], inactive=frozenset({"away"})) == Moves(1, (), True)
    assert maintain(make_app(2), [inst("a"), away], inactive=frozenset()) == Moves(0, (), True)


def test_maintain_kills_surplus_when_an_unreachable_one_comes_back() -> None:
    instances = [inst("back", staged_at=1.0), inst("replacement", staged_at=50.0)]
    assert maintain(make_app(1), instances, inactive=frozenset()) == Moves(0, ("replacement",), True)
    oldest = make_app(1, kill_selection="OLDEST_FIRST")
    assert maintain(oldest, instances, inactive=frozenset()) == Moves(0, ("back",), True)


def test_maintain_replaces_killed_and_failed() -> None:
    assert maintain(make_app(3), [inst("a"), inst("b", killing=True)], inactive=frozenset()) == Moves(2, (), True)


# --- restart simulated: hypothesis drives launches, health and kills in any order ---------------------------


class Sim:
    """A fake cluster for one app: moves are applied at once, their effects arrive when hypothesis says."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.instances = olds(app.instances)
        self.serial = itertools.count()

    def apply(self, moves: Moves) -> None:
        self.instances = [dataclasses.replace(i, killing=i.killing or i.task_id in moves.kill) for i in self.instances]
        for _ in range(moves.launch):
            n = next(self.serial)
            self.instances.append(inst(f"new{n}", state="TASK_STAGING", staged_at=100.0 + n, health=None, ready=None))

    def pending(self) -> list[int]:
        """Indexes of instances that have something left to happen to them."""
        return [n for n, i in enumerate(self.instances) if i.killing or not is_ready(self.app, i)]

    def advance(self, index: int) -> None:
        one = self.instances[index]
        if one.killing:
            del self.instances[index]
        elif one.state == "TASK_STAGING":
            self.instances[index] = dataclasses.replace(one, state="TASK_RUNNING")
        else:
            self.instances[index] = dataclasses.replace(one, health=HEALTHY, ready=True)


def ready_count(app: App, instances: Sequence[Instance]) -> int:
    return sum(1 for i in instances if is_ready(app, i))


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(1, 6),
    min_health=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    over=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    health=st.booleans(),
    readiness=st.booleans(),
    data=st.data(),
)
def test_restart_keeps_bounds_and_finishes(
    count: int, min_health: float, over: float, health: bool, readiness: bool, data: st.DataObject
) -> None:
    app = make_app(count, min_health=min_health, over=over, health=health, readiness=readiness)
    sim = Sim(app)
    plain = restart_bounds(app, old_alive=False)
    ceiling = plain.max_capacity + (1 if plain.min_healthy == plain.max_capacity else 0)
    for _ in range(20 * count + 20):
        moves = next_moves("RestartApplication", app, sim.instances)
        if moves.done:
            break
        sim.apply(moves)
        assert next_moves("RestartApplication", app, sim.instances) == Moves(0, (), False)  # idempotent
        assert sum(1 for i in sim.instances if is_alive(i)) <= ceiling
        assert ready_count(app, sim.instances) >= plain.min_healthy
        pending = sim.pending()
        assert pending, "not done, yet nothing left to happen"
        sim.advance(data.draw(st.sampled_from(pending)))
    else:
        pytest.fail("the restart did not finish")
    assert len(sim.instances) == count
    assert all(i.config_version == "v2" and is_ready(app, i) for i in sim.instances)


def test_adding_a_readiness_check_does_not_make_old_instances_unready() -> None:
    app = msgspec.structs.replace(make_app(2, min_health=1.0, over=0.0), readiness_checks=[ReadinessCheck()])
    moves = next_moves("RestartApplication", app, olds(2))
    assert moves.kill == () and moves.launch == 1, "old instances count as ready: one new at a time"
