"""Store the rows of a job acting on a selection: ids (and the ETags seen) instead of a file.

A selection comes from a list page ("delete selected") or from the fleet index ("select all N
matching"). The latter is stored as the list's query (``options["query"]``, with
``options["record_kind"]``) when the job is created; the worker's prepare step runs it again
on the index and stores the rows (:func:`selection_from_query`), so a request never writes a
million rows. Each id becomes one row: a deletion, a status change, or an id to export. The
ETag is the version the page or the index saw; the run sends it with If-Match, so a record
changed since ends as a conflict instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.http import QueryDict

from enrollments.bulk.chunks import dumps
from enrollments.bulk.store import NewRow, RowWriter, delete_row
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan
from fleet.filters import RecordFilterSet
from fleet.selectors import RecordQuery, matching_ids

#: The value of ``BulkRow.operation`` of a status change and of an id to export.
STATUS_OPERATION = "status"
EXPORT_OPERATION = "export"
STATUSES = ("enabled", "disabled")


def _row(job: BulkJob, line_no: int, rid: str, etag: str) -> NewRow:
    """Return the row of one selected id for ``job``'s kind."""
    etag = etag[:256]
    if job.kind == JobKind.DELETE_SELECTED:
        payload = dumps({"registrationId": rid, "attestation": {"type": "none"}})
        return delete_row(job.pk, line_no, rid, etag, payload)
    if job.kind == JobKind.SET_STATUS:
        payload = dumps({"registrationId": rid, "provisioningStatus": job.options["status"]})
        return NewRow(
            job.pk,
            line_no,
            rid,
            rid.lower(),
            STATUS_OPERATION,
            payload,
            plan=RowPlan.UPDATE.value,
            etag=etag,
        )
    # An export only reads: its rows name what to write and are never sent.
    return NewRow(
        job.pk, line_no, rid, rid.lower(), EXPORT_OPERATION, "", plan=RowPlan.UNCHANGED.value
    )


def selection_store(job: BulkJob, items: Iterable[tuple[str, str]]) -> int:
    """Store a row per distinct ``(id, etag)`` of ``items`` (first ETag wins); return how many."""
    if job.kind == JobKind.SET_STATUS and job.options.get("status") not in STATUSES:
        raise ValidationError("Choose enabled or disabled.")
    seen: set[str] = set()
    writer = RowWriter()
    for rid, etag in items:
        rid = rid.strip()
        if not rid or rid in seen:
            continue
        seen.add(rid)
        writer.add(_row(job, len(seen), rid, str(etag or "")))
    if not seen:
        raise ValidationError("Select at least one enrollment.")
    writer.flush()
    return len(seen)


def matching_query(instance: object, kind: str, query_string: str) -> RecordQuery | None:
    """Return the index query a list's ``query_string`` asks for, or None if it is not valid."""
    filters = RecordFilterSet(QueryDict(query_string), instance=instance, kind=kind)
    return filters.record_query() if filters.is_valid() else None


def selection_pending(job: BulkJob) -> bool:
    """Return whether ``job`` names a query whose rows are not stored yet."""
    return "query" in job.options and "selected" not in job.options


def selection_from_query(job: BulkJob) -> int:
    """Store a row per record the job's stored query matches now, with the index's ETags.

    Safe to run again after a worker died midway: rows stored before are replaced. The
    count is saved in ``options["selected"]`` only once every row is stored.
    """
    kind = str(job.options.get("record_kind") or "enrollment")
    query = matching_query(job.instance, kind, str(job.options["query"]))
    if query is None:
        raise ValidationError("The list's filters are not valid any more.")
    BulkRow.objects.filter(job=job).delete()
    try:
        selected = selection_store(job, matching_ids(job.instance, kind, query))
    except ValidationError:
        raise ValidationError("Nothing matches the list's filters any more.") from None
    job.options = {**job.options, "selected": selected}
    job.save(update_fields=["options"])
    return selected
