"""One token bucket per DPS instance, shared by every worker through Redis.

DPS allows a number of service operations per minute per instance (1,000 by default,
as Azure's DPS quotas list it) and counts each call, a bulk call of ten included, as one.
Every process that calls DPS for bulk work takes a token first, so the portal as a whole stays
under the quota however many workers run.

The bucket is kept as GCRA's "theoretical arrival time": :meth:`_BucketBase.reserve` takes the
tokens at once and returns how long the caller must wait before using them. One Lua script does
the reservation and the "hold" that a 429 sets (``Retry-After`` pauses every worker, not only
the one that was refused) atomically, using the Redis server's clock so hosts with skewed
clocks agree. Without Redis, :class:`LocalTokenBucket` applies the same arithmetic in
one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

log = logging.getLogger(__name__)

# GCRA (a token bucket kept as one "theoretical arrival time"). KEYS[1]: the key; KEYS[2]:
# the count of holds so far. ARGV: seconds per token, burst tolerance in seconds, tokens
# wanted, hold seconds (0 = none). Returns {the wait in microseconds before the reserved
# tokens may be used, the count of holds}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local hold = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if hold > 0 and now + hold > tat then tat = now + hold end
local wait = 0
if want > 0 then
  wait = tat - now - tolerance
  if wait < 0 then wait = 0 end
  tat = tat + want * interval
end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'EX', 3600)
local holds = tonumber(redis.call('GET', KEYS[2])) or 0
if hold > 0 then
  holds = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], 3600)
end
return {math.floor(wait * 1000000), holds}
"""


class TokenBucket(Protocol):
    """What the bulk runner needs from a limiter."""

    def acquire(self, tokens: int = 1) -> float:
        """Block until ``tokens`` operations may be made; return the seconds waited."""
        ...

    def hold(self, seconds: float) -> None:
        """Make every caller wait ``seconds`` from now (DPS answered 429 with Retry-After)."""
        ...


class _BucketBase:
    def __init__(
        self,
        per_minute: float,
        *,
        capacity: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("the operations-per-minute quota must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, capacity)
        self.interval = 1.0 / self.rate
        self.tolerance = (self.capacity - 1.0) * self.interval
        self._sleep = sleep

    def _reserve(self, tokens: int, hold: float) -> tuple[float, int]:  # pragma: no cover
        """Reserve ``tokens`` and/or hold; return (seconds to wait, count of holds so far)."""
        raise NotImplementedError

    def _holds(self) -> int:  # pragma: no cover - abstract
        """Return the count of holds so far."""
        raise NotImplementedError

    def reserve(self, tokens: int = 1) -> float:
        """Take ``tokens`` now; return the seconds to wait before using them."""
        return self._reserve(tokens, 0.0)[0]

    def acquire(self, tokens: int = 1) -> float:
        """Wait for ``tokens``; a hold placed meanwhile (a 429 elsewhere) voids the wait.

        Callers waiting side by side (several workers, or calls of one job in flight at once)
        reserved their turns before the 429; using them anyway would send each into the same
        429. Such a caller reserves again, behind the hold.
        """
        waited = 0.0
        while True:
            wait, holds = self._reserve(tokens, 0.0)
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait
            if self._holds() == holds:
                return waited

    def hold(self, seconds: float) -> None:
        if seconds > 0:
            self._reserve(0, seconds)


#: How long a bucket call keeps trying while Redis is unreachable (a restart, a failover)
#: before it gives up and lets the job's task fail (the sweep re-queues the job later).
REDIS_RETRY_SECONDS = 60.0


class RedisTokenBucket(_BucketBase):
    """A token bucket kept in one Redis hash, updated by a Lua script.

    A Redis restart must not end the job that asked for a turn: a call that cannot reach
    Redis is tried again, with backoff, for up to ``retry_seconds``. Redis restarted without
    persistence has forgotten the bucket, which then starts afresh (at most one token of
    burst) and forgets any 429 hold, which the next 429 sets again.
    """

    def __init__(
        self,
        client: Any,
        key: str,
        per_minute: float,
        *,
        retry_seconds: float = REDIS_RETRY_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(per_minute, **kwargs)
        self.key = key
        self.holds_key = f"{key}:holds"
        self.retry_seconds = retry_seconds
        self._client = client
        self._script = client.register_script(_LUA)

    def _call(self, fn: Callable[[], Any]) -> Any:
        import redis

        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        while True:
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                log.warning(
                    "Redis unreachable for the DPS rate limit %s (%s); trying again", self.key, exc
                )
                self._sleep(min(delay, left))
                delay = min(delay * 2, 2.0)

    def _reserve(self, tokens: int, hold: float) -> tuple[float, int]:
        # The script object loads itself again when a restarted Redis no longer knows it.
        micros, holds = self._call(
            lambda: self._script(
                keys=[self.key, self.holds_key],
                args=[repr(self.interval), repr(self.tolerance), tokens, repr(hold)],
            )
        )
        return int(micros) / 1_000_000, int(holds)

    def _holds(self) -> int:
        return int(self._call(lambda: self._client.get(self.holds_key)) or 0)


class LocalTokenBucket(_BucketBase):
    """The same bucket in process memory, for a single process without Redis."""

    def __init__(
        self, per_minute: float, *, clock: Callable[[], float] = time.monotonic, **kw: Any
    ) -> None:
        super().__init__(per_minute, **kw)
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = clock()
        self._hold_count = 0

    def _reserve(self, tokens: int, hold: float) -> tuple[float, int]:
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            if hold > 0:
                tat = max(tat, now + hold)
                self._hold_count += 1
            wait = 0.0
            if tokens > 0:
                wait = max(0.0, tat - now - self.tolerance)
                tat += tokens * self.interval
            self._tat = tat
            return wait, self._hold_count

    def _holds(self) -> int:
        with self._lock:
            return self._hold_count


#
# Per-instance buckets
#

_local: dict[str, LocalTokenBucket] = {}
_local_lock = threading.Lock()
_redis_client: Any = None


def reset_caches() -> None:
    """Forget this process's buckets and Redis client (tests; after a settings change)."""
    global _redis_client
    with _local_lock:
        _local.clear()
        _redis_client = None


def quota_per_minute(instance_name: str) -> int:
    """Return the operations-per-minute quota of a DPS instance (settings, env-configurable)."""
    overrides: dict[str, int] = getattr(settings, "DPS_OPS_PER_MINUTE_OVERRIDES", {}) or {}
    for name, value in overrides.items():
        if name.lower() == instance_name.lower():
            return int(value)
    return int(getattr(settings, "DPS_OPS_PER_MINUTE", 1000))


def _redis() -> Any:
    global _redis_client
    url = getattr(settings, "BULK_RATELIMIT_REDIS_URL", None) or getattr(
        settings, "REDIS_URL", None
    )
    if not url:
        return None
    if _redis_client is None or getattr(_redis_client, "_portal_url", None) != url:
        import redis

        _redis_client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        _redis_client._portal_url = url
    return _redis_client


def bucket_for(instance_name: str, *, per_minute: int | None = None) -> TokenBucket:
    """Return the shared bucket of a DPS instance (Redis when configured, else per process).

    The bucket runs at ``BULK_RATE_SAFETY`` (default 0.98) of the quota with a burst of one
    token, so no 60-second window ever holds more calls than the quota allows.
    """
    quota = per_minute or quota_per_minute(instance_name)
    safety = float(getattr(settings, "BULK_RATE_SAFETY", 0.98))
    rate = max(1.0, quota * safety - 1)
    client = _redis()
    if client is not None:
        return RedisTokenBucket(client, f"portal:dps-bucket:{instance_name.lower()}", rate)
    with _local_lock:
        bucket = _local.get(instance_name.lower())
        if bucket is None or abs(bucket.rate - rate / 60.0) > 1e-9:
            log.warning(
                "No Redis configured: the DPS rate limit of %s is kept per process only.",
                instance_name,
            )
            bucket = _local[instance_name.lower()] = LocalTokenBucket(rate)
        return bucket
