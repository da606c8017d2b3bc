"""Validate an uploaded CSV streaming and store its rows for the preview.

Memory stays flat whatever the file size: rows go to the database in batches as they are
parsed, and duplicate registration ids are found afterwards by one GROUP BY in the database
rather than with a set of every id in memory.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, cast

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min

from enrollments.bulk.chunks import Chunk, LineFormat, copy_line, dumps, helper_start
from enrollments.bulk.store import CopyLineWriter, NewRow, RowWriter, rows_analyze
from enrollments.csv.reader import CsvFormatError, open_csv, read_rows
from enrollments.csv.row import ParsedRow
from enrollments.models import BulkJob, BulkRow, RowPlan, RowStatus

log = logging.getLogger(__name__)


class IngestResult:
    """Counts of one ingest."""

    def __init__(self) -> None:
        self.rows = 0
        self.invalid = 0
        self.stopped = False


#: Smaller files are validated in the worker's own process: starting helper processes costs
#: about half a second, the time of some 15,000 rows.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
#: Helpers beside the PostgreSQL backend that indexes the rows; more than the cores only
#: adds switching.
MAX_HELPERS = 4


def default_helpers() -> int:
    """Return how many helper processes validate a large file: one per core (at most 4).

    The PostgreSQL backend storing the rows shares the cores, yet on the two-core development
    machine two helpers still beat one process (1,000,000 rows: 31,900 against 22,300
    rows/s); only with both cores busy with other work were they slower (19,400 against
    22,300).
    """
    return max(1, min(MAX_HELPERS, os.cpu_count() or 1))


def ingest_file(
    job: BulkJob,
    path: Path,
    *,
    max_rows: int,
    default_operation: str = "upsert",
    batch: int = 10000,
    should_stop: Callable[[], bool] | None = None,
    helpers: int | None = None,
) -> IngestResult:
    """Parse ``path`` into BulkRow rows of ``job``; raise CsvFormatError for a bad file.

    Existing rows of the job are removed first, so a validation restarted after a crash
    starts over cleanly. On PostgreSQL a large UTF-8 file is validated by ``helpers``
    processes (default: :func:`default_helpers`) over byte ranges of it; elsewhere, and for
    a file whose quoted cells span lines across a range end, by this process alone.
    """
    BulkRow.objects.filter(job=job).delete()
    result = IngestResult()
    limits = _limits()
    if connection.vendor != "postgresql":
        with path.open("rb") as handle:
            rows = read_rows(
                handle, default_operation=default_operation, max_rows=max_rows, **limits
            )
            _insert_rows(job.pk, rows, result, batch, should_stop)
    else:
        # COPY runs on psycopg's own objects, outside Django's cursor: wrap its errors as
        # Django's (DataError, ...), which the job's preparation turns into a failed job.
        with connection.wrap_database_errors:
            fmt = _line_format(job.pk)
            if helpers is None:
                helpers = default_helpers()
            parallel = helpers > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES
            chunks = (
                _plan_chunks(path, helpers, default_operation, fmt, limits) if parallel else None
            )
            if chunks is None or not _copy_chunks(chunks, result, batch, max_rows, should_stop):
                if chunks is not None:
                    # A range ended inside a quoted cell: start over in one process.
                    BulkRow.objects.filter(job=job).delete()
                    result = IngestResult()
                with path.open("rb") as handle:
                    rows = read_rows(
                        handle, default_operation=default_operation, max_rows=max_rows, **limits
                    )
                    _copy_rows(fmt, rows, result, batch, should_stop)
    if result.rows == 0:
        raise CsvFormatError("The file has a header but no rows.")
    if result.stopped:
        return result
    result.invalid += mark_duplicates(job)
    # Fresh statistics after a bulk COPY: without them the planner ignores the index of
    # rows to send and every claim of ten rows scans the rows already done (seen at 100,000).
    rows_analyze()
    return result


def _limits() -> dict[str, int]:
    """Return the row limits of the settings, as read_rows and the helpers take them."""
    return {
        "max_row_bytes": settings.BULK_MAX_ROW_BYTES,
        "max_columns": settings.BULK_MAX_COLUMNS,
    }


def _line_format(job_id: int) -> LineFormat:
    # etag, diff, status, attempts, lease, error_code, message: the same for every new row.
    return LineFormat(
        head=f"{job_id}\t",
        tail=f"\t\t\t{RowStatus.PENDING.value}\t0\t\t\t\n",
        pending=RowPlan.PENDING.value,
        invalid=RowPlan.INVALID.value,
    )


def _copy_rows(
    fmt: LineFormat,
    rows: Iterable[ParsedRow],
    result: IngestResult,
    batch: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Store rows parsed in this process as COPY text lines (PostgreSQL)."""
    with CopyLineWriter(batch) as writer:
        for parsed in rows:
            result.rows += 1
            if parsed.errors:
                result.invalid += 1
            writer.add(copy_line(fmt, parsed))
            if result.rows % batch == 0 and should_stop is not None:
                writer.flush()  # the check needs the connection the COPY holds
                if should_stop():
                    result.stopped = True
                    return


def _plan_chunks(
    path: Path,
    helpers: int,
    default_operation: str,
    fmt: LineFormat,
    limits: dict[str, int] | None = None,
) -> list[Chunk] | None:
    """Split the file after its header into ranges that end at line ends (None: UTF-16)."""
    limits = limits or {}
    with path.open("rb") as handle:
        source = open_csv(handle, **limits)  # a bad header fails here, as in one process
        if source.encoding == "utf-16":
            return None
        start, size = handle.tell(), path.stat().st_size
        bounds = [start]
        for k in range(1, helpers):
            handle.seek(max(start + (size - start) * k // helpers, bounds[-1]))
            handle.readline()  # the line under the cut belongs to the range before it
            bounds.append(min(handle.tell(), size))
        bounds.append(size)
        chunks: list[Chunk] = []
        before = 1  # the header line
        for low, high in itertools.pairwise(bounds):
            if low >= high:
                continue
            lines = _newlines(handle, low, high)
            chunks.append(
                Chunk(
                    path=str(path),
                    start=low,
                    lines=lines,
                    lines_before=before,
                    delimiter=source.delimiter,
                    columns=source.columns,
                    default_operation=default_operation,
                    fmt=fmt,
                    max_row_bytes=source.max_row_bytes,
                    max_columns=source.max_columns,
                )
            )
            before += lines
    # The last range reads to the end: its last line may have no line end to count.
    return [*chunks[:-1], replace(chunks[-1], lines=None)] if chunks else None


def _newlines(handle: IO[bytes], low: int, high: int) -> int:
    handle.seek(low)
    count, left = 0, high - low
    while left > 0:
        block = handle.read(min(left, 1 << 20))
        if not block:
            break
        count += block.count(b"\n")
        left -= len(block)
    return count


def _copy_chunks(
    chunks: list[Chunk],
    result: IngestResult,
    batch: int,
    max_rows: int,
    should_stop: Callable[[], bool] | None,
) -> bool:
    """Validate the ranges in helper processes and COPY their lines; False: start over alone.

    Helpers are plain subprocesses (:func:`enrollments.bulk.chunks.helper_start`), which a
    daemonic Celery prefork child may start, and fresh interpreters, so they share no
    database connection or broker socket with the worker. They are ended however this
    returns (a cancelled job, a bad file, an exception).
    """
    errors: dict[int, str] = {}
    with _helpers_running(chunks) as pipes:
        if pipes is None:
            return False
        next_check = batch
        with CopyLineWriter(batch) as writer:
            while pipes:
                for pipe in wait(list(pipes)):
                    if not _receive(
                        cast(Connection, pipe), pipes, writer, result, errors, max_rows
                    ):
                        return False
                if should_stop is not None and result.rows >= next_check:
                    next_check = result.rows + batch
                    writer.flush()  # the check needs the connection the COPY holds
                    if should_stop():
                        result.stopped = True
                        return True
    if errors:
        # The first bad line of the file, as one process would have reported it.
        raise CsvFormatError(errors[min(errors)])
    return True


@contextmanager
def _helpers_running(chunks: list[Chunk]) -> Iterator[dict[Connection, int] | None]:
    """Start a helper per range; yield each one's pipe and range index (None: none could start).

    On leaving, the pipes still open are closed and every helper is ended and waited for.
    """
    helpers: list[subprocess.Popen[bytes]] = []
    pipes: dict[Connection, int] = {}
    try:
        yield pipes if _helpers_start(chunks, helpers, pipes) else None
    finally:
        for pipe in pipes:
            pipe.close()
        for helper in helpers:
            if helper.poll() is None:
                helper.terminate()
            helper.wait()


def _helpers_start(
    chunks: list[Chunk], helpers: list[subprocess.Popen[bytes]], pipes: dict[Connection, int]
) -> bool:
    """Start the helpers into ``helpers`` and ``pipes``; False if the system refuses one."""
    for index, chunk in enumerate(chunks):
        try:
            helper, receive = helper_start(chunk)
        except OSError as exc:
            log.warning("Helper processes cannot start (%s); validating in one process.", exc)
            return False
        helpers.append(helper)
        pipes[receive] = index
    return True


def _receive(
    pipe: Connection,
    pipes: dict[Connection, int],
    writer: CopyLineWriter,
    result: IngestResult,
    errors: dict[int, str],
    max_rows: int,
) -> bool:
    """Take one helper message: store rows, or note the helper's end; False: start over alone.

    A helper that ended is dropped from ``pipes``; a bad line it met goes to ``errors`` under
    its range's index.
    """
    try:
        message = pipe.recv()
    except EOFError:
        return False  # a helper died without a word: be safe, go alone
    if message[0] == "rows":
        writer.add_block(message[1], message[2])
        result.rows += message[2]
        result.invalid += message[3]
        if result.rows > max_rows:
            raise CsvFormatError(
                f"The file has more than {max_rows:,} rows, the limit of one import; split it."
            )
        return True
    index = pipes.pop(pipe)
    pipe.close()
    if message[0] == "error":
        errors[index] = message[1]
    return message[0] != "split"


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
        writer.add(_new_row(job_id, parsed))
        if should_stop is not None and result.rows % batch == 0:
            writer.flush()
            if should_stop():
                result.stopped = True
                break
    writer.close()


def _new_row(job_id: int, parsed: ParsedRow) -> NewRow:
    return NewRow(
        job_id,
        parsed.line_no,
        parsed.registration_id[:1024],
        parsed.registration_id.lower()[:1024],
        parsed.operation,
        dumps(parsed.payload) if parsed.payload is not None else "",
        dumps(parsed.errors) if parsed.errors else "",
        RowPlan.INVALID.value if parsed.errors else RowPlan.PENDING.value,
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
            row.errors = dumps(errors)
            row.plan = RowPlan.INVALID
        BulkRow.objects.bulk_update(rows, ["errors", "plan"])
    return newly
