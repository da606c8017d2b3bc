"""Pace the sync: its own share of the instance's quota, inside the bucket everybody shares.

Every call of a pass takes a token from two buckets: the sync's own (``FLEET_SYNC_SHARE`` of
the quota, 20% by default), so a pass never takes more than its share, and the instance's
shared bucket (enrollments/ratelimit.py), so users and imports plus the sync stay under the
quota together. A 429 holds both, so every worker waits out ``Retry-After``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings

from enrollments.bulk.calls import backoff
from enrollments.dps.exceptions import DpsThrottled, DpsUnavailable
from enrollments.ratelimit import (
    LocalTokenBucket,
    RedisTokenBucket,
    TokenBucket,
    _redis,
    bucket_for,
    quota_per_minute,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Attempts of one call that fails with 5xx before the pass stops (it resumes next time).
UNAVAILABLE_ATTEMPTS = 6
#: A storm of 429s slows a pass; only this long a storm on one call stops it.
THROTTLE_GIVE_UP_SECONDS = 900.0

_local: dict[str, LocalTokenBucket] = {}


def reset_caches() -> None:
    """Forget the per-process sync buckets (tests; a new settings value)."""
    _local.clear()


def sync_share() -> float:
    """Return the fraction of an instance's quota the sync may use (FLEET_SYNC_SHARE)."""
    return min(1.0, max(0.01, float(getattr(settings, "FLEET_SYNC_SHARE", 0.2))))


def sync_ops_per_minute(instance_name: str) -> float:
    """Return how many operations per minute a pass of ``instance_name`` may make."""
    return max(1.0, quota_per_minute(instance_name) * sync_share())


class SyncBucket:
    """Both buckets as one :class:`~enrollments.ratelimit.TokenBucket`."""

    def __init__(self, own: TokenBucket, shared: TokenBucket) -> None:
        self.own = own
        self.shared = shared

    def acquire(self, tokens: int = 1) -> float:
        return self.own.acquire(tokens) + self.shared.acquire(tokens)

    def hold(self, seconds: float) -> None:
        self.shared.hold(seconds)
        self.own.hold(seconds)


def bucket_for_sync(instance_name: str) -> SyncBucket:
    """Return the pacing of a pass of ``instance_name`` (Redis when configured)."""
    rate = sync_ops_per_minute(instance_name)
    client: Any = _redis()
    own: TokenBucket
    if client is not None:
        own = RedisTokenBucket(client, f"portal:fleet-sync-bucket:{instance_name.lower()}", rate)
    else:
        local = _local.get(instance_name.lower()) or LocalTokenBucket(rate)
        _local[instance_name.lower()] = local
        own = local
    return SyncBucket(own, bucket_for(instance_name))


def paced_read(
    bucket: TokenBucket,
    call: Callable[[], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run one read: take a token, hold everybody on 429, back off on 5xx, then try again."""
    started = clock()
    unavailable = 0
    attempt = 0
    while True:
        bucket.acquire()
        try:
            return call()
        except DpsThrottled as exc:
            wait = backoff(min(attempt, 6), exc.retry_after if exc.retry_after is not None else 1.0)
            if clock() - started + wait > THROTTLE_GIVE_UP_SECONDS:
                raise
            bucket.hold(wait)
            log.info("DPS throttled the fleet sync; every worker waits %.1f s", wait)
        except DpsUnavailable:
            unavailable += 1
            if unavailable >= UNAVAILABLE_ATTEMPTS:
                raise
            sleep(backoff(unavailable))
        attempt += 1
