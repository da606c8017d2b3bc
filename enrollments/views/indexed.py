"""The record lists answered from the fleet index once an instance's first pass has ended.

The enrollment, group and registration lists read DPS page by page (continuation tokens)
until the index of their instance is complete; from then on they search, filter, sort, count
and page the index (fleet.selectors, fleet.filters) and show its age. Rows stay the rows of the
live list (links, status toggle, selection with the ETag), so the two paths look alike.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render

from authn.request import PortalRequest
from enrollments.views.kinds import RecordKind, list_rows
from fleet.filters import RecordFilterSet, RegistrationFilterSet
from fleet.models import IndexedRecord, SyncState
from fleet.registrations import registration_page
from fleet.selectors import record_page

#: Parameters that move within one result (a page, an order), not what is selected.
_NOT_FILTERS = ("page", "sort")


def finished_state(instance: Any) -> SyncState | None:
    """Return the instance's sync state once a first pass has ended, else None."""
    return (
        SyncState.objects.filter(instance=instance, finished_at__isnull=False)
        .only("finished_at", "counts", "phase", "last_error", "started_at")
        .first()
    )


def filter_query(request: PortalRequest) -> str:
    """Return the list's filters as a query string, without its page and order."""
    params = request.GET.copy()
    for name in _NOT_FILTERS:
        params.pop(name, None)
    return params.urlencode()


class IndexedItem:
    """An index row seen through the attributes the list rows read from a DPS record."""

    def __init__(self, row: IndexedRecord) -> None:
        self.row = row
        self.id = row.record_id
        self.device_id = row.device_id or None
        self.etag = row.etag
        self.iot_hubs = row.iot_hubs or ()
        self.provisioning_status = row.status
        self.last_updated_date_time_utc = None  # a datetime already: record_rows sets it
        kind = row.x509_kind
        # Only what the attestation label and the edit rules ask (never a key: none is indexed).
        x509 = SimpleNamespace(
            client_certificates=kind == "client" or None,
            signing_certificates=kind == "signing" or None,
            ca_references=kind == "caReferences" or None,
        )
        self.attestation = SimpleNamespace(type=row.attestation, x509=x509)


def record_rows(
    kind: RecordKind, rows: list[IndexedRecord], caps: Any, instance: Any, selectable: bool
) -> list[dict[str, Any]]:
    """Return the live list's rows for index rows, with what only the index knows."""
    out = list_rows(kind, [IndexedItem(r) for r in rows], caps, instance, selectable=selectable)
    for row, record in zip(out, rows, strict=True):
        row.update(
            updated=record.updated,
            drift_at=record.drift_at,
            expires=record.cert_not_after,
            registration=record.registration_status,
            tags=record.tags,
        )
    return out


def record_list(request: PortalRequest, kind: RecordKind, ctx: dict[str, Any]) -> HttpResponse:
    """Render the record list of ``kind`` from the index (``ctx``: the page's base context)."""
    dps, caps = ctx["instance"], ctx["caps"]
    filters = RecordFilterSet(request.GET, instance=dps, kind=kind.name)
    ctx.update(indexed=True, filters=filters, list_url=kind.url("list", dps))
    if not filters.is_valid():
        return render(request, "enrollments/record_list.html", ctx, status=400)
    page = record_page(dps, kind.name, filters.record_query(), ctx["sync"])
    selectable = not kind.is_group and kind.delete in caps
    ctx.update(
        page=page,
        rows=record_rows(kind, page.rows, caps, dps, selectable),
        selectable=selectable,
        sort=filters.form.cleaned_data.get("sort") or "id",
        matching_total=page.total,
        query_string=filter_query(request),
        record_kind=kind.name,
    )
    return render(request, "enrollments/record_list.html", ctx)


def registration_list(
    request: PortalRequest, group: str | None, ctx: dict[str, Any]
) -> HttpResponse:
    """Render a group's registration records (``None``: all the instance's) from the index."""
    dps = ctx["instance"]
    filters = RegistrationFilterSet(request.GET)
    ctx.update(indexed=True, filters=filters)
    if not filters.is_valid():
        return render(request, "enrollments/registration_list.html", ctx, status=400)
    page = registration_page(dps, group, filters.registration_query())
    ctx.update(
        page=page,
        rows=[{"record": r, "updated": r.updated} for r in page.rows],
        sort=filters.form.cleaned_data.get("sort") or "id",
    )
    return render(request, "enrollments/registration_list.html", ctx)
