"""The Redis token bucket rides out a Redis restart instead of failing the job's task."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from enrollments.ratelimit import RedisTokenBucket


class _FlakyRedis:
    """Stands in for redis.Redis: the script fails ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def register_script(self, _source: str) -> Any:
        def script(*, keys: list[str], args: list[Any]) -> list[int]:
            self.calls += 1
            if self.calls <= self.failures:
                raise redis.ConnectionError("Error 111 connecting: Connection refused.")
            return [0, 0]

        return script

    def get(self, _key: str) -> None:
        return None


def test_a_short_outage_is_waited_out() -> None:
    slept: list[float] = []
    client = _FlakyRedis(failures=3)
    bucket = RedisTokenBucket(client, "k", 600, sleep=slept.append)
    assert bucket.acquire() == 0
    assert client.calls == 4
    assert len(slept) == 3


def test_a_long_outage_still_fails_after_the_retry_time() -> None:
    client = _FlakyRedis(failures=10**6)
    bucket = RedisTokenBucket(client, "k", 600, sleep=lambda _s: None, retry_seconds=0.05)
    with pytest.raises(redis.ConnectionError):
        bucket.acquire()
