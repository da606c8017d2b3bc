"""Read registration records from the index (a group's, or all of an instance's): search,
filter, sort, count, page."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from fleet.models import IndexedRegistration
from fleet.selectors import PER_PAGE

SORTS = {
    "id": ("key",),
    "-id": ("-key",),
    "status": ("status", "key"),
    "-status": ("-status", "key"),
    "updated": ("updated", "key"),
    "-updated": ("-updated", "-key"),
    "group": ("group_key", "key"),
    "-group": ("-group_key", "key"),
}


@dataclass
class RegistrationQuery:
    """What a registration list asks for; built by fleet.filters.RegistrationFilterSet."""

    search: str = ""
    match: str = "prefix"  # or "contains"
    status: str = ""
    hub: str = ""  # the IoT hub a record is assigned to
    sort: str = "id"
    page: int = 1
    per_page: int = PER_PAGE


@dataclass
class RegistrationPage:
    """One page of the matching registration records, the total and status counts."""

    rows: list[IndexedRegistration]
    total: int
    facets: dict[str, dict[str, int]]
    page: int
    pages: int
    indexed_total: int


def _matching(
    group_rows: QuerySet[IndexedRegistration], q: RegistrationQuery
) -> QuerySet[IndexedRegistration]:
    qs = group_rows
    text = q.search.strip().lower()
    if text:
        # Keys are lower-cased registration ids; device ids are compared case-insensitively.
        how = "contains" if q.match == "contains" else "startswith"
        qs = qs.filter(Q(**{f"key__{how}": text}) | Q(**{f"device_id__i{how}": text}))
    if q.hub:
        qs = qs.filter(assigned_hub__iexact=q.hub)
    return qs


def registration_page(instance: Any, group: str | None, q: RegistrationQuery) -> RegistrationPage:
    """Return the page ``q`` asks for of ``group``'s registration records (``None``: all the
    instance's, of groups and of individual enrollments alike)."""
    group_rows = IndexedRegistration.objects.filter(instance=instance)
    if group is not None:
        group_rows = group_rows.filter(group_key=group.lower())
    matching = _matching(group_rows, q)
    # The status facet counts every status of what the search matches (not only the one chosen).
    statuses = {
        str(row["status"]): int(row["n"])
        for row in matching.order_by().values("status").annotate(n=Count("*"))
    }
    total = statuses.get(q.status, 0) if q.status else sum(statuses.values())
    if q.status:
        matching = matching.filter(status=q.status)
    pages = max(1, math.ceil(total / q.per_page))
    page = min(max(1, q.page), pages)
    start = (page - 1) * q.per_page
    ordered = matching.order_by(*SORTS.get(q.sort, SORTS["id"]))
    return RegistrationPage(
        rows=list(ordered[start : start + q.per_page]),
        total=total,
        facets={"status": statuses},
        page=page,
        pages=pages,
        indexed_total=group_rows.count() if q.search.strip() or q.status or q.hub else total,
    )
