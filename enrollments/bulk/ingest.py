"""Validate an uploaded CSV streaming and store its rows for the preview.

Memory stays flat whatever the file size: rows go to the database in batches as they are
parsed, and duplicate registration ids are found afterwards by one GROUP BY in the database
rather than with a set of every id in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from django.db.models import Count, Min

from enrollments.bulk.store import RowWriter
from enrollments.csv_format import CsvFormatError, read_rows
from enrollments.models import BulkJob, BulkRow, RowPlan, RowStatus

log = logging.getLogger(__name__)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class IngestResult:
    """Counts of one ingest."""

    def __init__(self) -> None:
        self.rows = 0
        self.invalid = 0
        self.stopped = False


def ingest_file(
    job: BulkJob,
    path: Path,
    *,
    max_rows: int,
    default_operation: str = "upsert",
    batch: int = 2000,
    should_stop: Callable[[], bool] | None = None,
) -> IngestResult:
    """Parse ``path`` into BulkRow rows of ``job``; raise CsvFormatError for a bad file.

    Existing rows of the job are removed first, so a validation restarted after a crash
    starts over cleanly.
    """
    BulkRow.objects.filter(job=job).delete()
    result = IngestResult()
    writer = RowWriter(batch)
    _ingest_rows(job, path, writer, result, max_rows, default_operation, should_stop)
    writer.close()
    if result.rows == 0:
        raise CsvFormatError("The file has a header but no rows.")
    if result.stopped:
        return result
    result.invalid += mark_duplicates(job)
    return result


def _ingest_rows(
    job: BulkJob,
    path: Path,
    writer: RowWriter,
    result: IngestResult,
    max_rows: int,
    default_operation: str,
    should_stop: Callable[[], bool] | None,
) -> None:
    job_id = job.pk
    pending, invalid = RowPlan.PENDING.value, RowPlan.INVALID.value
    status = RowStatus.PENDING.value
    with path.open("rb") as handle:
        for parsed in read_rows(handle, default_operation=default_operation, max_rows=max_rows):
            result.rows += 1
            if parsed.errors:
                result.invalid += 1
            writer.add(
                (
                    job_id,
                    parsed.line_no,
                    parsed.registration_id[:1024],
                    parsed.registration_id.lower()[:1024],
                    parsed.operation,
                    _dumps(parsed.payload) if parsed.payload is not None else "",
                    _dumps(parsed.errors) if parsed.errors else "",
                    invalid if parsed.errors else pending,
                    "",
                    "",
                    status,
                    0,
                    "",
                    "",
                    "",
                )
            )
            if should_stop is not None and result.rows % 10000 == 0 and should_stop():
                result.stopped = True
                return


def mark_duplicates(job: BulkJob) -> int:
    """Mark every row whose registration id appears more than once; return how many newly."""
    groups = (
        BulkRow.objects.filter(job=job)
        .exclude(reg_key="")
        .values("reg_key")
        .annotate(n=Count("id"), first=Min("line_no"))
        .filter(n__gt=1)
        .order_by()
    )
    newly = 0
    for group in groups.iterator(chunk_size=2000):
        rows = list(
            BulkRow.objects.filter(job=job, reg_key=group["reg_key"]).only(
                "id", "line_no", "errors", "plan"
            )
        )
        lines = sorted(r.line_no for r in rows)
        for row in rows:
            others = [str(n) for n in lines if n != row.line_no]
            errors = json.loads(row.errors) if row.errors else []
            errors.append(
                {
                    "column": "registrationId",
                    "message": "This registration ID is also on line"
                    + ("s " if len(others) > 1 else " ")
                    + ", ".join(others[:10])
                    + (" and more" if len(others) > 10 else "")
                    + "; keep one row per enrollment.",
                }
            )
            if row.plan != RowPlan.INVALID:
                newly += 1
            row.errors = _dumps(errors)
            row.plan = RowPlan.INVALID
        BulkRow.objects.bulk_update(rows, ["errors", "plan"])
    return newly
