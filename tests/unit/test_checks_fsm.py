"""The pure health-check and check machines, driven by hand with a fake clock."""

from __future__ import annotations

from butte.agent.checks_fsm import (
    CheckMachine,
    CheckPolicy,
    CheckResult,
    Effect,
    Health,
    HealthMachine,
    HealthPolicy,
    KillUnhealthy,
    ProbeFailed,
    ProbePassed,
    ReportCheck,
    ReportHealth,
    ScheduleProbe,
)

POLICY = HealthPolicy(delay_s=1.0, interval_s=2.0, timeout_s=1.0, consecutive_failures=3, grace_period_s=5.0)


def reports(effects: list[Effect]) -> list[Effect]:
    return [effect for effect in effects if not isinstance(effect, ScheduleProbe)]


def test_first_probe_waits_for_the_delay() -> None:
    machine = HealthMachine(POLICY, started_at=100.0)
    assert machine.start() == [ScheduleProbe(101.0)]


def test_first_success_reports_healthy_and_schedules_after_the_interval() -> None:
    machine = HealthMachine(POLICY, started_at=0.0)
    effects = machine.handle(ProbePassed(), now=1.5)
    assert effects == [ReportHealth(healthy=True, consecutive_failures=0), ScheduleProbe(3.5)]
    # Staying healthy sends nothing more.
    assert machine.handle(ProbePassed(), now=3.5) == [ScheduleProbe(5.5)]


def test_failures_inside_the_grace_period_do_not_count() -> None:
    machine = HealthMachine(POLICY, started_at=0.0)
    for now in (1.0, 3.0, 5.0):
        assert machine.handle(ProbeFailed("refused"), now) == [ScheduleProbe(now + 2.0)]
    assert machine.health is Health.UNKNOWN and machine.consecutive_failures == 0
    # Past the grace period they do: the first one makes the task unhealthy.
    effects = machine.handle(ProbeFailed("refused"), now=5.5)
    assert reports(effects) == [ReportHealth(healthy=False, consecutive_failures=1)]


def test_grace_period_ends_at_the_first_success() -> None:
    machine = HealthMachine(POLICY, started_at=0.0)
    machine.handle(ProbePassed(), now=1.0)
    effects = machine.handle(ProbeFailed("status 500"), now=3.0)
    assert reports(effects) == [ReportHealth(healthy=False, consecutive_failures=1)]


def test_consecutive_failures_kill_the_task_and_stop_probing() -> None:
    machine = HealthMachine(POLICY, started_at=0.0)
    machine.handle(ProbePassed(), now=1.0)
    machine.handle(ProbeFailed("a"), now=3.0)
    assert reports(machine.handle(ProbeFailed("b"), now=5.0)) == []  # still unhealthy: no new update
    effects = machine.handle(ProbeFailed("exit 1"), now=7.0)
    [kill] = effects
    assert isinstance(kill, KillUnhealthy)
    assert "health check failed 3 times" in kill.message and "exit 1" in kill.message
    assert machine.health is Health.KILLED
    assert machine.handle(ProbePassed(), now=9.0) == []


def test_a_success_resets_the_count_and_reports_recovery() -> None:
    machine = HealthMachine(POLICY, started_at=0.0)
    machine.handle(ProbePassed(), now=1.0)
    machine.handle(ProbeFailed("a"), now=3.0)
    machine.handle(ProbeFailed("b"), now=5.0)
    effects = machine.handle(ProbePassed(), now=7.0)
    assert reports(effects) == [ReportHealth(healthy=True, consecutive_failures=0)]
    machine.handle(ProbeFailed("c"), now=9.0)
    assert machine.consecutive_failures == 1 and machine.health is Health.UNHEALTHY


def test_one_allowed_failure_kills_at_once_after_the_grace_period() -> None:
    policy = HealthPolicy(delay_s=0.0, interval_s=1.0, timeout_s=1.0, consecutive_failures=1, grace_period_s=0.0)
    machine = HealthMachine(policy, started_at=0.0)
    effects = machine.handle(ProbeFailed("refused"), now=0.5)
    assert [type(effect) for effect in effects] == [ReportHealth, KillUnhealthy]
    assert isinstance(effects[1], KillUnhealthy) and "1 time in a row" in effects[1].message
    assert machine.snapshot().probes == 1


def test_check_reports_only_changes() -> None:
    machine = CheckMachine(CheckPolicy(delay_s=0.5, interval_s=1.0, timeout_s=1.0), started_at=10.0)
    assert machine.start() == [ScheduleProbe(10.5)]
    assert machine.handle(CheckResult(0), now=10.5) == [ReportCheck(CheckResult(0)), ScheduleProbe(11.5)]
    assert machine.handle(CheckResult(0), now=11.5) == [ScheduleProbe(12.5)]
    assert machine.handle(CheckResult(1), now=12.5) == [ReportCheck(CheckResult(1)), ScheduleProbe(13.5)]
    # An unknown result (timed out) is a change too, and a check never kills.
    assert reports(machine.handle(CheckResult(None), now=13.5)) == [ReportCheck(CheckResult(None))]
