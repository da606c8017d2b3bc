"""The scrape: a prometheus-client collector reading what every process shares, at scrape time.

Nothing here is kept in process memory between scrapes, so the figures do not depend on which
web process Prometheus reaches: jobs, rows, the fleet index and certificate expiry come from the
database, the DPS call counters and the rate-limit buckets from Redis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from portal.metrics import recorder

#: Certificates expiring within this many days are counted as "expiring".
EXPIRY_WINDOW_DAYS = 30
#: The Redis keys of the two buckets of each instance (enrollments/ratelimit.py, fleet/pacing.py).
BUCKETS = {"bulk": "portal:dps-bucket:", "sync": "portal:fleet-sync-bucket:"}


def _instances() -> list[tuple[str, str]]:
    """Return (name, host in lower case) of every registered instance."""
    from instances.models import DpsInstance

    return [(n, h.lower()) for n, h in DpsInstance.objects.values_list("name", "host")]


class PortalCollector(Collector):
    """Yield every portal metric, read afresh at each scrape."""

    def collect(self) -> Iterable[Metric]:
        instances = _instances()
        by_host = {host: name for name, host in instances}
        yield from _dps_calls(recorder.counters_read(), by_host)
        yield from _buckets([name for name, _ in instances])
        yield from _jobs()
        yield from _fleet()
        yield from _certificates()


def _split(counters: dict[str, float], kind: str) -> Iterator[tuple[list[str], float]]:
    for field, value in counters.items():
        parts = field.split(recorder.SEP)
        if parts[0] == kind:
            yield parts[1:], value


def _dps_calls(counters: dict[str, float], by_host: dict[str, str]) -> Iterator[Metric]:
    def instance(host: str) -> str:
        return by_host.get(host, host)

    calls = CounterMetricFamily(
        "portal_dps_calls",
        "DPS service calls by instance, operation and HTTP status (none: no response).",
        labels=["instance", "operation", "status"],
    )
    for (host, op, status), value in _split(counters, "calls"):
        calls.add_metric([instance(host), op, status], value)
    yield calls
    throttled = CounterMetricFamily(
        "portal_dps_throttled", "DPS calls answered 429 (throttled).", labels=["instance"]
    )
    for (host,), value in _split(counters, "throttled"):
        throttled.add_metric([instance(host)], value)
    yield throttled
    yield _latency(counters, instance)


def _latency(counters: dict[str, float], instance: Any) -> Metric:
    series: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"sum": 0.0, "count": 0.0, "le": {}}
    )
    for (host, op), value in _split(counters, "seconds_sum"):
        series[(instance(host), op)]["sum"] = value
    for (host, op), value in _split(counters, "seconds_count"):
        series[(instance(host), op)]["count"] = value
    for (host, op, bound), value in _split(counters, "seconds_bucket"):
        series[(instance(host), op)]["le"][float(bound)] = value
    family = HistogramMetricFamily(
        "portal_dps_call_duration_seconds",
        "Latency of DPS service calls by instance and operation.",
        labels=["instance", "operation"],
    )
    for (name, op), s in sorted(series.items()):
        # The recorder adds a call to every bucket it fits in: the counts are cumulative.
        buckets = [(repr(b), s["le"].get(b, 0.0)) for b in recorder.LATENCY_BUCKETS]
        buckets.append(("+Inf", s["count"]))
        family.add_metric([name, op], buckets, s["sum"])
    return family


def _buckets(names: list[str]) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "portal_dps_bucket_backlog_seconds",
        "How far ahead the DPS rate-limit bucket is booked: a new call would wait this long "
        "(0 = the bucket has room).",
        labels=["instance", "bucket"],
    )
    holds = CounterMetricFamily(
        "portal_dps_bucket_holds",
        "Pauses of every caller after DPS answered 429 (Retry-After).",
        labels=["instance", "bucket"],
    )
    client = recorder.redis_client()
    if client is not None and names:
        now_s, now_us = client.time()
        now = now_s + now_us / 1_000_000
        keys = [(n, b, f"{prefix}{n.lower()}") for n in names for b, prefix in BUCKETS.items()]
        pipe = client.pipeline(transaction=False)
        for _, _, key in keys:
            pipe.get(key)
            pipe.get(f"{key}:holds")
        values = pipe.execute()
        for i, (name, bucket, _) in enumerate(keys):
            tat, held = values[2 * i], values[2 * i + 1]
            backlog.add_metric([name, bucket], max(0.0, float(tat) - now) if tat else 0.0)
            holds.add_metric([name, bucket], float(held or 0))
    yield backlog
    yield holds


def _jobs() -> Iterator[Metric]:
    from enrollments.models import BulkJob, JobState

    jobs = GaugeMetricFamily(
        "portal_bulk_jobs", "Bulk jobs held, by kind and state.", labels=["kind", "state"]
    )
    counts = {
        (row["kind"], row["state"]): row["n"]
        for row in BulkJob.objects.values("kind", "state").annotate(n=Count("id"))
    }
    kinds = {kind for kind, _ in counts}
    for kind in sorted(kinds):
        for state in JobState.values:
            jobs.add_metric([kind, state], counts.get((kind, state), 0))
    yield jobs
    totals = BulkJob.objects.aggregate(
        done=Sum("count_done"),
        failed=Sum("count_failed"),
        conflict=Sum("count_conflict"),
        skipped=Sum("count_skipped"),
    )
    rows = GaugeMetricFamily(
        "portal_bulk_rows",
        "Rows of the bulk jobs held, by outcome (done = applied to DPS).",
        labels=["outcome"],
    )
    for outcome, value in totals.items():
        rows.add_metric([outcome], float(value or 0))
    yield rows


def _fleet() -> Iterator[Metric]:
    from fleet.models import SyncState

    age = GaugeMetricFamily(
        "portal_fleet_index_age_seconds",
        "Seconds since the last complete pass of the fleet index ended.",
        labels=["instance"],
    )
    duration = GaugeMetricFamily(
        "portal_fleet_sync_duration_seconds",
        "How long the last complete pass of the fleet index took.",
        labels=["instance"],
    )
    failing = GaugeMetricFamily(
        "portal_fleet_sync_failing",
        "1 when the last pass of the fleet index ended with an error.",
        labels=["instance"],
    )
    now = timezone.now()
    for state in SyncState.objects.select_related("instance"):
        name = state.instance.name
        failing.add_metric([name], 1.0 if state.last_error else 0.0)
        if state.finished_at is None:
            continue
        age.add_metric([name], (now - state.finished_at).total_seconds())
        if state.started_at is not None and state.started_at <= state.finished_at:
            duration.add_metric([name], (state.finished_at - state.started_at).total_seconds())
    yield age
    yield duration
    yield failing


def _certificates() -> Iterator[Metric]:
    from fleet.models import IndexedRecord

    now = timezone.now()
    soon = now + timedelta(days=EXPIRY_WINDOW_DAYS)
    rows = (
        IndexedRecord.objects.filter(cert_not_after__lt=soon)
        .values("instance__name", "kind")
        .annotate(
            expired=Count("id", filter=Q(cert_not_after__lte=now)),
            expiring=Count("id", filter=Q(cert_not_after__gt=now)),
        )
    )
    family = GaugeMetricFamily(
        "portal_certificates_expiring",
        f"X.509 enrollments and groups of the fleet index whose earlier certificate has expired "
        f"or expires within {EXPIRY_WINDOW_DAYS} days.",
        labels=["instance", "kind", "window"],
    )
    for row in rows:
        family.add_metric([row["instance__name"], row["kind"], "expired"], row["expired"])
        family.add_metric(
            [row["instance__name"], row["kind"], f"{EXPIRY_WINDOW_DAYS}d"], row["expiring"]
        )
    yield family
