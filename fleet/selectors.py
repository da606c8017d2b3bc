"""Read the fleet index: search, filter, sort, page, count and facet one instance's records.

Every query is scoped to one instance and one record kind first (the leading columns of every
index). Search ignores case: an id prefix uses the unique key's index (``key`` is the
lower-cased id in byte order, which is also how lists sort ids), a substring the trigram index
on the upper-cased id (PostgreSQL; plain scans of one instance on SQLite). Tags and desired
properties use JSON containment (``@>``, GIN). The total and the facets come from the stored
counts (fleet.facets) when the filters allow, else from one GROUP BY over the matching
rows, so a page costs three statements: rows, facet counts, age. The facets are disjunctive:
a chosen status, attestation or IoT Edge value does not hide the facet's other values, whose
counts say how many rows each would give with every other filter kept (the GROUP BY leaves the
facet choices out; fleet.facets.tally applies them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, TextField
from django.db.models.expressions import OrderBy
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Lower, Upper
from django.utils import timezone

from fleet import facets
from fleet.models import IndexedRecord, SyncState

SORTS = {
    "id": ("key",),  # unique within an instance and kind
    "-id": ("-key",),
    "updated": ("updated", "id"),
    "-updated": ("-updated", "-id"),
    "status": ("status", "key"),
    "-status": ("-status", "key"),
    "expiry": ("cert_not_after", "id"),
    "-expiry": ("-cert_not_after", "-id"),
    "attestation": ("attestation", "key"),
    "-attestation": ("-attestation", "key"),
}
FACETS = facets.FACETS
PER_PAGE = 25


@dataclass
class RecordQuery:
    """What a list asks for; built by fleet.filters.RecordFilterSet from the URL."""

    search: str = ""
    match: str = "prefix"  # or "contains"
    status: str = ""
    attestation: str = ""
    hub: str = ""
    allocation_policy: str = ""
    iot_edge: bool | None = None
    tags: dict[str, str] = field(default_factory=dict)
    registration_status: str = ""
    expires_within_days: int | None = None
    expired: bool = False
    drifted: bool = False
    sort: str = "id"
    page: int = 1
    per_page: int = PER_PAGE


@dataclass
class RecordPage:
    """One page of matching rows with the total, the facet counts and the index's age."""

    rows: list[IndexedRecord]
    total: int
    facets: dict[str, dict[str, int]]
    page: int
    pages: int
    indexed_total: int
    synced_at: datetime | None


def _tagged(qs: QuerySet[IndexedRecord], tags: dict[str, str]) -> QuerySet[IndexedRecord]:
    if connection.vendor == "postgresql":
        return qs.filter(tags__contains=tags)  # @>, answered by the GIN index
    # SQLite has no JSON containment: compare each key's text.
    for i, (key, value) in enumerate(tags.items()):
        text = Cast(KeyTextTransform(key, "tags"), output_field=TextField())
        qs = qs.alias(**{f"tag_{i}": text}).filter(**{f"tag_{i}": value})
    return qs


def records_matching(instance: Any, kind: str, q: RecordQuery) -> QuerySet[IndexedRecord]:
    """Return the rows of ``instance`` of ``kind`` that ``q``'s filters select (unordered)."""
    qs = IndexedRecord.objects.filter(instance=instance, kind=kind)
    text = q.search.strip().upper()
    if text:
        # Registration (or group) id or device id, each answered by its own index. A device
        # id that is empty or equal to the registration id adds no match, and the device id's
        # indexes leave such rows out (migration 0003): the condition says so to the planner.
        # An id prefix uses the unique key's index (the lower-cased id, byte order), a
        # substring the trigram index on the upper-cased id.
        qs = qs.alias(record_id_upper=Upper("record_id"), device_id_upper=Upper("device_id"))
        how = "contains" if q.match == "contains" else "startswith"
        by_id = (
            Q(record_id_upper__contains=text)
            if how == "contains"
            else Q(key__startswith=text.lower())
        )
        distinct_device = ~Q(device_id=F("record_id")) & ~Q(device_id="")
        qs = qs.filter(by_id | (Q(**{f"device_id_upper__{how}": text}) & distinct_device))
    exact = {
        "status": q.status,
        "attestation": q.attestation,
        "iot_hub_host_name": q.hub,
        "allocation_policy": q.allocation_policy,
        "registration_status": q.registration_status,
    }
    qs = qs.filter(**{k: v for k, v in exact.items() if v})
    if q.iot_edge is not None:
        qs = qs.filter(iot_edge=q.iot_edge)
    if q.tags:
        qs = _tagged(qs, q.tags)
    now = timezone.now()
    if q.expired:
        qs = qs.filter(cert_not_after__lt=now)
    if q.expires_within_days is not None:
        qs = qs.filter(
            cert_not_after__gte=now, cert_not_after__lt=now + timedelta(days=q.expires_within_days)
        )
    if q.drifted:
        qs = qs.filter(drift_at__isnull=False)
    return qs


def _cells(qs: QuerySet[IndexedRecord]) -> list[tuple[dict[str, str], int]]:
    """Return ``qs``'s rows grouped by the facets: (facet values, count) per cell."""
    rows = qs.order_by().values(*FACETS).annotate(n=Count("*"))
    return [({name: facets.facet_key(row[name]) for name in FACETS}, int(row["n"])) for row in rows]


def facet_counts(qs: QuerySet[IndexedRecord]) -> tuple[int, dict[str, dict[str, int]]]:
    """Return the total and, per facet, the count of each value among ``qs``'s rows."""
    return facets.tally(_cells(qs), {})


def live_facets(instance: Any, kind: str, q: RecordQuery) -> tuple[int, dict[str, dict[str, int]]]:
    """Return the total and the disjunctive facets of ``q`` counted on the rows.

    One GROUP BY of status, attestation and IoT Edge over the query without its facet choices
    (every other filter applied); :func:`fleet.facets.tally` then counts each facet with the
    other choices but not its own, as it does the stored cells. Measured on 100,000 rows, this
    beat one GROUP BY per chosen facet (12 vs 19 ms and 24 vs 30 ms with two chosen; the same
    statement with one or none), and the numbers are the same.
    """
    unchosen = replace(q, status="", attestation="", iot_edge=None)
    chosen = facets.chosen_values(q.status, q.attestation, q.iot_edge)
    return facets.tally(_cells(records_matching(instance, kind, unchosen)), chosen)


def _from_counts(
    instance: Any, kind: str, q: RecordQuery
) -> tuple[int, dict[str, dict[str, int]]] | None:
    """Return total and facets from fleet.facets when ``q``'s filters allow it, else None."""
    live_only = (
        q.search.strip(),
        q.hub,
        q.allocation_policy,
        q.registration_status,
        q.expires_within_days is not None,
        q.expired,
        q.drifted,
        len(q.tags) > 1,
    )
    if any(live_only):
        return None
    tag = next(iter(q.tags.items())) if q.tags else None
    return facets.counted(
        instance, kind, status=q.status, attestation=q.attestation, iot_edge=q.iot_edge, tag=tag
    )


def _indexed_total(instance: Any, kind: str, state: SyncState | None) -> int:
    """Return how many rows of ``kind`` the index holds (from the stored counts: no COUNT)."""
    counted = facets.counted(instance, kind)
    if counted is not None:
        return counted[0]
    return int((state.counts if state else {}).get(kind, 0))


def record_page(
    instance: Any, kind: str, q: RecordQuery, state: SyncState | None = None
) -> RecordPage:
    """Return the page ``q`` asks for, with its total and facets (``state``: if read already)."""
    qs = records_matching(instance, kind, q)
    answer = _from_counts(instance, kind, q)
    total, counts = answer if answer is not None else live_facets(instance, kind, q)
    unfiltered = answer is not None and not (q.status or q.attestation or q.tags)
    unfiltered = unfiltered and q.iot_edge is None
    pages = max(1, math.ceil(total / q.per_page))
    page = min(max(1, q.page), pages)
    start = (page - 1) * q.per_page
    if state is None:
        state = SyncState.objects.filter(instance=instance).only("finished_at", "counts").first()
    return RecordPage(
        rows=_rows(q, qs, start),
        total=total,
        facets=counts,
        page=page,
        pages=pages,
        # Nothing filtered: the total is everything the index holds (no second count).
        indexed_total=total if unfiltered else _indexed_total(instance, kind, state),
        synced_at=state.finished_at if state else None,
    )


def _rows(q: RecordQuery, qs: QuerySet[IndexedRecord], start: int) -> list[IndexedRecord]:
    """Return the page's rows of ``qs`` (``q`` matched), from ``start``, in ``q``'s order."""
    order: tuple[str | OrderBy, ...] = SORTS.get(q.sort, SORTS["id"])
    if q.search.strip() and q.match != "contains" and order[0] in ("key", "-key"):
        # An id prefix, sorted by id. Sorted by ``key`` itself, PostgreSQL walks the key index
        # from the instance's first key and filters every row until the page is full: 4.3 s
        # for a prefix matching 70,000 of a million far down the index. ``lower(key)`` (the
        # same order: keys are lower case) matches no index, so the matches are fetched by
        # their own indexes and only they are sorted (0.3 s; a narrow prefix stays at 4 ms).
        order = (Lower("key").desc() if order[0] == "-key" else Lower("key").asc(),)
    return list(qs.order_by(*order)[start : start + q.per_page])


def matching_ids(
    instance: Any, kind: str, q: RecordQuery, *, chunk: int = 2000
) -> Iterator[tuple[str, str]]:
    """Yield (id, ETag) of every row ``q`` selects, for "select all N matching" jobs.

    The ETags are the index's: a job that sends them with If-Match ends each record changed
    since the last pass as a conflict, never overwriting a version nobody saw.
    """
    qs = records_matching(instance, kind, q).order_by("id").values_list("record_id", "etag")
    yield from qs.iterator(chunk_size=chunk)
