"""Launch backoff: backoffSeconds, times backoffFactor per failure, capped, forgotten after a quiet period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.frameworks.marathon.backoff import LaunchDelays
from butte.wire.marathon import App

APP = App(id="/web", cmd="serve", backoff_seconds=1.0, backoff_factor=2.0, max_launch_delay_seconds=10.0)


def test_no_failure_no_delay() -> None:
    delays = LaunchDelays()
    assert delays.delay_left_s("/web", 0.0) == 0.0
    assert delays.may_launch("/web", 0.0)
    assert delays.current("/web", 0.0) is None


def test_first_failure_waits_backoff_seconds_from_the_failure() -> None:
    delays = LaunchDelays()
    delays.on_failure("/web", APP, 100.0)
    assert delays.delay_left_s("/web", 100.0) == pytest.approx(1.0)
    assert delays.delay_left_s("/web", 100.25) == pytest.approx(0.75)
    assert not delays.may_launch("/web", 100.5)
    assert delays.may_launch("/web", 101.0)


def test_each_failure_multiplies_the_delay_up_to_the_cap() -> None:
    delays = LaunchDelays()
    seen: list[float] = []
    for n in range(6):
        now = 100.0 + n
        delays.on_failure("/web", APP, now)
        seen.append(delays.delay_left_s("/web", now))
    assert seen == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0])


def test_marathon_defaults_sequence() -> None:
    delays = LaunchDelays()
    app = App(id="/web", cmd="serve")
    for _ in range(3):
        delays.on_failure("/web", app, 0.0)
    assert delays.delay_left_s("/web", 0.0) == pytest.approx(1.15**2)


def test_quiet_period_forgets_the_delay() -> None:
    delays = LaunchDelays()
    delays.on_failure("/web", APP, 0.0)
    delays.on_failure("/web", APP, 1.0)  # delay 2 s from t=1; quiet after 1 + 2 + 10 = 13
    delays.on_failure("/web", APP, 12.9)  # still remembered: 4 s
    assert delays.delay_left_s("/web", 12.9) == pytest.approx(4.0)
    delays.on_failure("/web", APP, 12.9 + 4.0 + 10.0)  # quiet long enough: starts over
    assert delays.delay_left_s("/web", 26.9) == pytest.approx(1.0)


def test_quiet_period_ends_the_delay_without_a_new_failure() -> None:
    delays = LaunchDelays()
    delays.on_failure("/web", APP, 0.0)
    assert delays.current("/web", 10.9) is not None
    assert delays.current("/web", 11.0) is None


def test_reset_forgets_the_delay() -> None:
    delays = LaunchDelays()
    for t in (0.0, 1.0, 2.0):
        delays.on_failure("/web", APP, t)
    delays.reset("/web")
    assert delays.may_launch("/web", 2.0)
    delays.on_failure("/web", APP, 3.0)
    assert delays.delay_left_s("/web", 3.0) == pytest.approx(1.0)
    delays.reset("/never-failed")


def test_apps_have_separate_delays() -> None:
    delays = LaunchDelays()
    delays.on_failure("/web", APP, 0.0)
    delays.on_failure("/web", APP, 0.0)
    delays.on_failure("/db", APP, 0.0)
    assert delays.delay_left_s("/web", 0.0) == pytest.approx(2.0)
    assert delays.delay_left_s("/db", 0.0) == pytest.approx(1.0)


def test_cap_below_backoff_seconds_wins() -> None:
    delays = LaunchDelays()
    delays.on_failure("/web", App(id="/web", cmd="x", backoff_seconds=30.0, max_launch_delay_seconds=5.0), 0.0)
    assert delays.delay_left_s("/web", 0.0) == pytest.approx(5.0)


@given(st.lists(st.floats(0.0, 50.0), min_size=1, max_size=30))
def test_delay_never_exceeds_the_cap_and_never_goes_negative(gaps: list[float]) -> None:
    delays = LaunchDelays()
    now = 0.0
    for gap in gaps:
        now += gap
        delays.on_failure("/web", APP, now)
        assert 0.0 < delays.delay_left_s("/web", now) <= APP.max_launch_delay_seconds
        assert delays.delay_left_s("/web", now + 100.0) == 0.0
