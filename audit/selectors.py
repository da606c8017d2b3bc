"""Read-only queries over the audit log: filters, keyset pages, one event, the chart."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Count, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from audit.models import AuditEvent

PAGE_SIZE = 50

# Must match audit/migrations/0002_append_only_and_indexes.py so the trigram index applies.
_SEARCH_EXPRESSION = (
    "(actor_upn || ' ' || actor_name || ' ' || actor_oid || ' ' || target_type || ' ' "
    "|| target_id || ' ' || dps_instance || ' ' || action || ' ' || message)"
)
_SEARCH_FIELDS = (
    "actor_upn",
    "actor_name",
    "actor_oid",
    "target_type",
    "target_id",
    "dps_instance",
    "action",
    "message",
)


@dataclass(frozen=True)
class AuditFilters:
    """What the list, the chart and the exports narrow the log to; empty means everything."""

    actor: str = ""
    action: str = ""
    dps_instance: str = ""
    target_type: str = ""
    target_id: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""

    def is_empty(self) -> bool:
        return self == AuditFilters()

    def without_time(self) -> AuditFilters:
        return replace(self, since=None, until=None)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(qs: QuerySet[AuditEvent], text: str) -> QuerySet[AuditEvent]:
    if connection.vendor == "postgresql":
        # One ILIKE over the indexed expression (pg_trgm GIN index) instead of eight ORs.
        match = RawSQL(  # noqa: S611 - constant SQL, the search text is a parameter
            f"{_SEARCH_EXPRESSION} ILIKE %s", (_like_pattern(text),), output_field=BooleanField()
        )
        return qs.filter(match)
    cond = Q()
    for name in _SEARCH_FIELDS:
        cond |= Q(**{f"{name}__icontains": text})
    return qs.filter(cond)


# Filters that are one equality each: AuditFilters field → model field.
_EXACT_FILTERS = ("action", "dps_instance", "target_type", "target_id", "outcome")


def _actor_filter(actor: str) -> Q:
    # A UPN (failed sign-ins have only that) or an Entra object id.
    return Q(actor_upn=actor) if "@" in actor else Q(actor_oid=actor)


def audit_event_queryset(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Return the events matching ``filters``, unordered."""
    exact = {name: getattr(filters, name) for name in _EXACT_FILTERS if getattr(filters, name)}
    if filters.since:
        exact["time__gte"] = filters.since
    if filters.until:
        exact["time__lt"] = filters.until
    qs = AuditEvent.objects.filter(**exact)
    if filters.actor:
        qs = qs.filter(_actor_filter(filters.actor))
    if filters.q:
        qs = _search(qs, filters.q)
    return qs


#
# Keyset pagination
#


@dataclass(frozen=True)
class Cursor:
    """A position in the (time, id) order; encoded opaquely into the URL."""

    time: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.time.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor | None:
        """Return the cursor, or None for anything malformed (treated as the first page)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, _, ident = raw.partition("|")
            moment = datetime.fromisoformat(when)
            if timezone.is_naive(moment):
                return None
            return cls(moment, int(ident))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None

    @classmethod
    def of(cls, event: AuditEvent) -> Cursor:
        return cls(event.time, event.pk)


@dataclass
class AuditPage:
    events: list[AuditEvent]
    older: Cursor | None = None
    newer: Cursor | None = None
    filters: AuditFilters = field(default_factory=AuditFilters)


def audit_event_page(
    filters: AuditFilters,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> AuditPage:
    """Return one page newest first, strictly older than ``before`` or newer than ``after``.

    Keyset pagination on (time, id): each page is an index range scan of ``size + 1`` rows
    whatever its depth, where OFFSET would read and discard every row before it. The
    redundant ``time <=`` / ``time >=`` bound lets PostgreSQL use it as the index range.
    """
    qs = audit_event_queryset(filters)
    if after is not None and before is None:
        qs = qs.filter(time__gte=after.time).filter(
            Q(time__gt=after.time) | Q(time=after.time, id__gt=after.id)
        )
        rows = list(qs.order_by("time", "id")[: size + 1])
        has_more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return AuditPage(
            events=rows,
            newer=Cursor.of(rows[0]) if rows and has_more_newer else None,
            older=Cursor.of(rows[-1]) if rows else None,
            filters=filters,
        )
    if before is not None:
        qs = qs.filter(time__lte=before.time).filter(
            Q(time__lt=before.time) | Q(time=before.time, id__lt=before.id)
        )
    rows = list(qs.order_by("-time", "-id")[: size + 1])
    has_more_older = len(rows) > size
    rows = rows[:size]
    return AuditPage(
        events=rows,
        older=Cursor.of(rows[-1]) if rows and has_more_older else None,
        newer=Cursor.of(rows[0]) if rows and before is not None else None,
        filters=filters,
    )


def audit_event_get(event_id: int) -> AuditEvent | None:
    return AuditEvent.objects.filter(pk=event_id).first()


def audit_event_iter(filters: AuditFilters, *, up_to_id: int | None = None) -> Iterator[AuditEvent]:
    """Stream the matching events newest first (server-side cursor on PostgreSQL)."""
    qs = audit_event_queryset(filters)
    if up_to_id is not None:
        qs = qs.filter(id__lte=up_to_id)
    return qs.order_by("-time", "-id").iterator(chunk_size=2000)


def audit_latest_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


#
# Chart
#


@dataclass(frozen=True)
class ChartBucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Chart:
    buckets: list[ChartBucket]
    unit: str
    since: datetime
    until: datetime

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)


def audit_chart(filters: AuditFilters, *, now: datetime | None = None) -> Chart:
    """Count events per outcome per hour (up to two days) or per day (up to 92 days).

    Without a time range the chart covers the last 30 days. Longer ranges are cut to the
    newest 92 days so the aggregation stays an index range scan of bounded size.
    """
    now = now or timezone.now()
    until = filters.until or now
    since = filters.since or until - timedelta(days=30)
    if until - since > timedelta(days=92):
        since = until - timedelta(days=92)
    hourly = until - since <= timedelta(days=2)
    trunc: Any = TruncHour("time") if hourly else TruncDay("time")
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    qs = audit_event_queryset(replace(filters, since=since, until=until))
    rows = qs.annotate(bucket=trunc).values("bucket", "outcome").annotate(n=Count("id"))
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["bucket"], {})[row["outcome"]] = row["n"]
    first = since.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        first = first.replace(hour=0)
    buckets = []
    cursor = first
    while cursor < until:
        buckets.append(ChartBucket(cursor, counts.get(cursor, {})))
        cursor += step
    return Chart(buckets=buckets, unit="hour" if hourly else "day", since=since, until=until)
