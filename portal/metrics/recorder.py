"""Counters of DPS calls, kept in Redis so every process adds to the same figures.

prometheus-client's multiprocess mode would keep them in files of one host: workers on other
hosts than the web process would go unseen, and the files must be wiped at every restart. A
Redis hash is shared by every host, survives restarts of the processes and costs one pipelined
round trip per DPS call (a DPS call takes tens of milliseconds). Without Redis (one process
on one machine) the counters live in this process.

Recording never raises: a metric lost is better than a DPS call failed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: The Redis hash holding every counter (setting METRICS_REDIS_KEY); fields are
#: ``kind|label|label...``.
KEY = "portal:metrics:dps"
SEP = "|"
#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Record ids in paths become placeholders: the label set stays small whatever the fleet.
_ID_PATHS = (
    (re.compile(r"^/(enrollments|enrollmentGroups|registrations)/query$"), r"/\1/query"),
    (re.compile(r"^/registrations/[^/]+/query$"), "/registrations/{groupId}/query"),
    (
        re.compile(r"^/(enrollments|enrollmentGroups)/[^/]+/attestationmechanism$"),
        r"/\1/{id}/attestationmechanism",
    ),
    (re.compile(r"^/(enrollments|enrollmentGroups|registrations)/[^/]+$"), r"/\1/{id}"),
)

#: After Redis failed, counting stops this long so DPS calls do not each wait for its timeout.
PAUSE_AFTER_FAILURE = 30.0

_local: dict[str, float] = defaultdict(float)
_local_lock = threading.Lock()
_paused_until = 0.0


def operation_of(method: str, path: str) -> str:
    """Return the operation of a call: its method and path with every id replaced."""
    path = path.split("?", 1)[0]
    for pattern, template in _ID_PATHS:
        if pattern.match(path):
            path = pattern.sub(template, path)
            break
    return f"{method.upper()} {path}"


def _host(base_url: str) -> str:
    return (urlsplit(base_url).hostname or base_url).lower()


def _fields(host: str, operation: str, status: int | None, elapsed: float) -> dict[str, float]:
    code = str(status) if status is not None else "none"
    fields: dict[str, float] = {
        SEP.join(("calls", host, operation, code)): 1,
        SEP.join(("seconds_sum", host, operation)): elapsed,
        SEP.join(("seconds_count", host, operation)): 1,
    }
    for bound in LATENCY_BUCKETS:
        if elapsed <= bound:
            fields[SEP.join(("seconds_bucket", host, operation, repr(bound)))] = 1
    if status == 429:
        fields[SEP.join(("throttled", host))] = 1
    return fields


def dps_call_record(
    base_url: str, method: str, path: str, status: int | None, elapsed: float
) -> None:
    """Count one DPS call (``status`` None: no response) and its latency in seconds."""
    global _paused_until
    if time.monotonic() < _paused_until:
        return
    try:
        fields = _fields(_host(base_url), operation_of(method, path), status, elapsed)
        client = redis_client()
        if client is None:
            with _local_lock:
                for name, value in fields.items():
                    _local[name] += value
            return
        pipe = client.pipeline(transaction=False)
        for name, value in fields.items():
            if float(value).is_integer():
                pipe.hincrby(_key(), name, int(value))
            else:
                pipe.hincrbyfloat(_key(), name, value)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics never fail a DPS call
        _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning(
            "DPS call metrics not recorded for %.0f s: %s", PAUSE_AFTER_FAILURE, type(exc).__name__
        )


def counters_read() -> dict[str, float]:
    """Return every counter, from Redis (all processes) or from this process."""
    client = redis_client()
    if client is None:
        with _local_lock:
            return dict(_local)
    raw = client.hgetall(_key())
    return {k.decode(): float(v) for k, v in raw.items()}


def reset_caches() -> None:
    """Forget this process's counters and any pause after a Redis failure."""
    global _paused_until
    with _local_lock:
        _local.clear()
    _paused_until = 0.0


def counters_reset() -> None:
    """Forget every counter (tests)."""
    with _local_lock:
        _local.clear()
    client = redis_client()
    if client is not None:
        client.delete(_key())


def _key() -> str:
    from django.conf import settings

    return str(getattr(settings, "METRICS_REDIS_KEY", None) or KEY)


def redis_client() -> Any:
    """Return the shared Redis client, or None without Redis."""
    # The one Redis client of the rate limiter: same URL, same pool.
    from enrollments.ratelimit import _redis as ratelimit_redis

    return ratelimit_redis()
