"""Export the individual enrollments of an instance (all, or a selection) to the import CSV format.

A selection ("select all N matching" in the fleet index) is stored as the job's rows; the
export still pages DPS's query (a thousand records a call, far cheaper than a GET each) and
writes only the selected ids, as DPS holds them now.

Keys are written only when the owner holds ``attestation.reveal`` and asked for them; that
choice is audited. A crashed export starts over: it only reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction
from enrollments.bulk.audit_trail import job_audit
from enrollments.bulk.calls import paced, paced_pages
from enrollments.bulk.files import bulk_dir, result_file_move
from enrollments.csv.columns import COLUMNS
from enrollments.csv.export import csv_line, enrollment_to_row
from enrollments.dps.types import DpsApi
from enrollments.models import BulkJob, BulkRow
from enrollments.ratelimit import TokenBucket

PAGE = 1000


def export_run(
    job: BulkJob,
    client: DpsApi,
    bucket: TokenBucket,
    *,
    can_reveal: bool,
    should_stop: Callable[[], bool],
    heartbeat: Callable[[], None],
) -> None:
    """Write the export file; store its path and row count on the job."""
    include_keys = bool(job.options.get("include_keys")) and can_reveal
    tmp = bulk_dir() / f"export-{job.pk}.partial"
    BulkJob.objects.filter(pk=job.pk).update(progress_done=0, count_done=0)
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write(csv_line(COLUMNS))
        count = _write_rows(
            out,
            job,
            client,
            bucket,
            include_keys=include_keys,
            should_stop=should_stop,
            heartbeat=heartbeat,
        )
    if count is None:
        tmp.unlink(missing_ok=True)
        return
    final = result_file_move(job, tmp)
    BulkJob.objects.filter(pk=job.pk).update(
        result_path=str(final),
        total_rows=count,
        progress_total=count,
        progress_done=count,
        count_done=count,
        heartbeat_at=timezone.now(),
    )
    job_audit(
        job,
        AuditAction.EXPORT,
        after={"rows": count, "include_keys": include_keys},
        message="export with keys" if include_keys else "export without keys",
    )


def _write_rows(
    out: TextIO,
    job: BulkJob,
    client: DpsApi,
    bucket: TokenBucket,
    *,
    include_keys: bool,
    should_stop: Callable[[], bool],
    heartbeat: Callable[[], None],
) -> int | None:
    """Write a CSV line per enrollment, page by page; return how many (None: stopped)."""
    if should_stop():
        return None
    wanted = _selection(job)
    if wanted is not None:  # a known total: the bar shows how far the export is
        BulkJob.objects.filter(pk=job.pk).update(progress_total=len(wanted))
    count = 0
    pages = paced_pages(bucket, lambda c: client.enrollment_query(page_size=PAGE, continuation=c))
    for page in pages:
        for enrollment in page.items:
            if wanted is not None and (enrollment.registration_id or "").lower() not in wanted:
                continue
            data: dict[str, Any] = enrollment.to_json()
            keys = None
            if include_keys and (data.get("attestation") or {}).get("type") == "symmetricKey":
                keys = _keys(client, bucket, enrollment.registration_id)
            row = enrollment_to_row(data, keys=keys)
            out.write(csv_line(row[c] for c in COLUMNS))
            count += 1
        BulkJob.objects.filter(pk=job.pk).update(
            progress_done=count, count_done=count, progress_total=F("progress_total")
        )
        heartbeat()
        if wanted is not None and count == len(wanted):
            break  # every selected enrollment is written: the pages left hold none of them
        if page.has_more and should_stop():  # checked before each next page
            return None
    return count


def _selection(job: BulkJob) -> set[str] | None:
    """Return the lower-cased ids the job exports, or None for all."""
    if not job.options.get("selected"):
        return None
    return set(BulkRow.objects.filter(job=job).values_list("reg_key", flat=True))


def _keys(client: DpsApi, bucket: TokenBucket, registration_id: str) -> dict[str, Any]:
    mech = paced(bucket, lambda: client.enrollment_attestation_mechanism(registration_id))
    return mech.to_json().get("symmetricKey") or {}
