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


def test_a_hold_placed_while_waiting_sends_the_waiter_behind_it():
    """Callers who reserved turns before a 429 wait out the hold instead of using them."""
    clock = Clock()
    bucket = LocalTokenBucket(600, clock=clock)  # one turn per 0.1 s
    bucket.reserve()  # someone's turn now

    def sleep(seconds: float) -> None:
        clock.now += seconds
        if not held:
            held.append(True)
            bucket.hold(5.0)  # another caller's request was refused meanwhile

    held: list[bool] = []
    bucket._sleep = sleep
    start = clock.now
    bucket.acquire()
    assert held
    assert clock.now - start >= 5.0  # went after the hold, not at its reserved 0.1 s


def test_redis_bucket_paces_holds_and_voids_waits_like_the_local_one():
    import os
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), 1).close()
    except OSError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (the shared bucket lives there)")
    import redis

    from enrollments.ratelimit import RedisTokenBucket

    client = redis.Redis.from_url("redis://127.0.0.1:6379/11")
    key = f"test-bucket-{os.getpid()}"
    client.delete(key, f"{key}:holds")
    try:
        bucket = RedisTokenBucket(client, key, 600)  # one turn per 0.1 s, Redis's clock
        waits = [bucket.reserve() for _ in range(3)]
        assert waits[0] == 0.0
        assert waits[1] == pytest.approx(0.1, abs=0.02)
        assert waits[2] == pytest.approx(0.2, abs=0.02)
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 1:
                bucket.hold(2.0)  # a 429 elsewhere while this caller waits its turn

        bucket._sleep = sleep
        bucket.acquire()
        assert len(slept) == 2, "the turn reserved before the hold was given up"
        assert slept[1] == pytest.approx(2.0, abs=0.1)
    finally:
        client.delete(key, f"{key}:holds")
