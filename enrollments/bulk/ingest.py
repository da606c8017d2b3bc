"""Validate an uploaded CSV streaming and store its rows for the preview.

Memory stays flat whatever the file size: rows go to the database in batches as they are
parsed, and duplicate registration ids are found afterwards by one GROUP BY in the database
rather than with a set of every id in memory.
"""

from __future__ import annotations

import json
import json.encoder
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Count, Min

from enrollments.bulk.store import CopyLineWriter, RowTuple, RowWriter, copy_text
from enrollments.csv_format import CsvFormatError, ParsedRow, read_rows
from enrollments.models import BulkJob, BulkRow, RowPlan, RowStatus

log = logging.getLogger(__name__)


def _compact_json() -> Callable[[Any], str]:
    """Return a function writing compact JSON (UTF-8 text, no ASCII escapes).

    ``JSONEncoder.encode`` builds a fresh C encoder and a circular-reference memo on every
    call, which took half the time of encoding a row's payload; one C encoder built here,
    without the memo (payloads are trees built per row), writes the same text in half the
    time. Interpreters without the C encoder get the ordinary one.
    """
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    # Arguments: markers, default, string encoder, indent, key separator, item separator,
    # sort_keys, skipkeys, allow_nan (the same choices as ``plain``).
    encode = make(
        None, plain.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda obj: "".join(encode(obj, 0))


_dumps = _compact_json()


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
    batch: int = 10000,
    should_stop: Callable[[], bool] | None = None,
) -> IngestResult:
    """Parse ``path`` into BulkRow rows of ``job``; raise CsvFormatError for a bad file.

    Existing rows of the job are removed first, so a validation restarted after a crash
    starts over cleanly.
    """
    BulkRow.objects.filter(job=job).delete()
    result = IngestResult()
    with path.open("rb") as handle:
        rows = read_rows(handle, default_operation=default_operation, max_rows=max_rows)
        if connection.vendor == "postgresql":
            _copy_rows(job.pk, rows, result, batch, should_stop)
        else:
            _insert_rows(job.pk, rows, result, batch, should_stop)
    if result.rows == 0:
        raise CsvFormatError("The file has a header but no rows.")
    if result.stopped:
        return result
    result.invalid += mark_duplicates(job)
    return result


def _copy_rows(
    job_id: int,
    rows: Iterable[ParsedRow],
    result: IngestResult,
    batch: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Store rows as COPY text lines built here (PostgreSQL).

    Only the columns a row can vary in are escaped; the rest of the line is a constant, which
    costs far less than psycopg's per-field ``write_row`` over fifteen fields.
    """
    pending, invalid = RowPlan.PENDING.value, RowPlan.INVALID.value
    # etag, diff, status, attempts, lease, error_code, message: the same for every new row.
    tail = f"\t\t\t{RowStatus.PENDING.value}\t0\t\t\t\n"
    head = f"{job_id}\t"
    with CopyLineWriter(batch) as writer:
        for parsed in rows:
            result.rows += 1
            rid = copy_text(parsed.registration_id[:1024])
            key = copy_text(parsed.registration_id.lower()[:1024])
            payload = copy_text(_dumps(parsed.payload)) if parsed.payload is not None else ""
            if parsed.errors:
                result.invalid += 1
                errors, plan = copy_text(_dumps(parsed.errors)), invalid
            else:
                errors, plan = "", pending
            writer.add(
                f"{head}{parsed.line_no}\t{rid}\t{key}\t{copy_text(parsed.operation)}"
                f"\t{payload}\t{errors}\t{plan}{tail}"
            )
            if result.rows % batch == 0 and should_stop is not None:
                writer.flush()  # the check needs the connection the COPY holds
                if should_stop():
                    result.stopped = True
                    return


def _insert_rows(
    job_id: int,
    rows: Iterable[ParsedRow],
    result: IngestResult,
    batch: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Store rows as tuples with executemany (databases other than PostgreSQL)."""
    writer = RowWriter(batch)
    for parsed in rows:
        result.rows += 1
        if parsed.errors:
            result.invalid += 1
        writer.add(_row_tuple(job_id, parsed))
        if should_stop is not None and result.rows % batch == 0:
            writer.flush()
            if should_stop():
                result.stopped = True
                break
    writer.close()


def _row_tuple(job_id: int, parsed: ParsedRow) -> RowTuple:
    return (
        job_id,
        parsed.line_no,
        parsed.registration_id[:1024],
        parsed.registration_id.lower()[:1024],
        parsed.operation,
        _dumps(parsed.payload) if parsed.payload is not None else "",
        _dumps(parsed.errors) if parsed.errors else "",
        RowPlan.INVALID.value if parsed.errors else RowPlan.PENDING.value,
        "",
        "",
        RowStatus.PENDING.value,
        0,
        "",
        "",
        "",
    )


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
