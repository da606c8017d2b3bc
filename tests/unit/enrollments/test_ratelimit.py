"""The local token bucket: pacing, burst, hold after a 429."""

from __future__ import annotations

import pytest

from enrollments.ratelimit import LocalTokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_paces_at_the_rate_and_never_exceeds_the_window():
    clock = Clock()
    bucket = LocalTokenBucket(600, clock=clock, sleep=clock.sleep)  # 10 per second
    times = []
    for _ in range(100):
        bucket.acquire()
        times.append(clock.now)
    # The first call goes at once, then one every 0.1 s.
    assert times[0] == 1000.0
    assert times[-1] == pytest.approx(1000.0 + 9.9)
    window = [t for t in times if t < 1000.0 + 1.0]
    assert len(window) == 10


def test_hold_delays_everyone():
    clock = Clock()
    bucket = LocalTokenBucket(600, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.hold(5.0)
    waited = bucket.acquire()
    assert waited == pytest.approx(5.0)


def test_reserve_returns_growing_waits_without_sleeping():
    clock = Clock()
    bucket = LocalTokenBucket(60, clock=clock)  # one per second
    assert [bucket.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]


def test_rejects_non_positive_quota():
    with pytest.raises(ValueError, match="positive"):
        LocalTokenBucket(0)
