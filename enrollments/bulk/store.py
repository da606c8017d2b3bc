"""Fast storage of parsed rows: COPY on PostgreSQL, executemany elsewhere.

The ORM's ``bulk_create`` builds a model instance per row; at a million rows that alone costs
more than parsing, so rows go to the table as plain tuples in batches. (Storing batches from
a second thread was measured too: no faster, since formatting the rows needs the GIL.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import Any, NamedTuple

from django.db import connection, transaction

from enrollments.models import BulkRow, RowPlan, RowStatus


class NewRow(NamedTuple):
    """A row as stored before the preview, in the table's column order (:data:`FIELDS`).

    A tuple, so psycopg's COPY and ``executemany`` take it as it is: building a model
    instance per row would cost more than parsing it.
    """

    job_id: int
    line_no: int
    registration_id: str
    reg_key: str
    operation: str
    payload: str
    errors: str = ""
    plan: str = RowPlan.PENDING.value
    etag: str = ""
    diff: str = ""
    status: str = RowStatus.PENDING.value
    attempts: int = 0
    lease: str = ""
    error_code: str = ""
    message: str = ""


FIELDS = NewRow._fields


_DELETE = RowPlan.DELETE.value
_PENDING = RowStatus.PENDING.value


def delete_row(
    job_id: int, line_no: int, registration_id: str, etag: str, payload: str = ""
) -> NewRow:
    """Return the row of a deletion chosen on a page rather than read from a file."""
    # Positional, and the enum values read once: a row per selected enrollment, up to a
    # million of them, and keyword arguments with enum lookups doubled the cost of a row.
    return NewRow(
        job_id,
        line_no,
        registration_id,
        registration_id.lower(),
        "delete",
        payload,
        "",
        _DELETE,
        etag,
        "",
        _PENDING,
        0,
        "",
        "",
        "",
    )


def rows_insert(rows: Sequence[NewRow]) -> None:
    """Insert rows in one statement or COPY."""
    if not rows:
        return
    table = BulkRow._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A batch lost to a crash is harmless (an ingest starts over), so its commit need
            # not wait for the WAL to reach the disk.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {table} ({', '.join(FIELDS)}) FROM STDIN") as copy:
                # write_row formats and escapes in psycopg's C code (the binary build).
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(FIELDS))
            # Table and column names are constants of this module, never input.
            sql = f"INSERT INTO {table} ({', '.join(FIELDS)}) VALUES ({marks})"  # noqa: S608
            cursor.executemany(sql, rows)


class RowWriter:
    """Buffer rows and insert them ``batch`` at a time; :meth:`close` stores the rest."""

    def __init__(self, batch: int = 2000) -> None:
        self.batch = batch
        self._pending: list[NewRow] = []
        self.written = 0

    def add(self, row: NewRow) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch:
            self.flush()

    def extend(self, rows: Iterable[NewRow]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            rows_insert(rows)
            self.written += len(rows)

    def close(self) -> None:
        self.flush()


class CopyLineWriter:
    """Stream ready-made COPY text lines (:data:`FIELDS` order) into BulkRow, PostgreSQL only.

    The COPY stays open while the caller parses the next rows, so the server indexes one batch
    while Python prepares the next (on two cores the two overlap instead of taking turns); it
    ends, and its transaction commits, every ``batch`` lines and in :meth:`flush`, so the
    connection is free for other queries (a cancel check) between batches. Lines go to the
    socket ``chunk`` at a time: one ``write`` per line would cost more than the line itself.
    Use it as a context manager: an exception rolls back the open batch.
    """

    def __init__(self, batch: int = 10000, chunk: int = 500) -> None:
        self.batch = batch
        self.chunk = chunk
        self.written = 0
        self._lines: list[str] = []
        self._in_copy = 0
        self._stack: ExitStack | None = None
        self._copy: Any = None

    def __enter__(self) -> CopyLineWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
        elif self._stack is not None:
            stack, self._stack = self._stack, None
            stack.__exit__(exc_type, exc, tb)

    def add(self, line: str) -> None:
        """Queue one line (see enrollments.bulk.chunks.copy_line)."""
        self._lines.append(line)
        if len(self._lines) >= self.chunk:
            self._send()

    def add_block(self, data: bytes, rows: int) -> None:
        """Send ``rows`` lines already joined and encoded (a helper process's block)."""
        self._send()
        if self._stack is None:
            self._open()
        self._copy.write(data)
        self._in_copy += rows
        if self._in_copy >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Send what is queued and end the open COPY, committing its rows."""
        self._send()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()
            self.written += self._in_copy
            self._in_copy = 0

    def _send(self) -> None:
        if not self._lines:
            return
        if self._stack is None:
            self._open()
        self._copy.write("".join(self._lines).encode())
        self._in_copy += len(self._lines)
        self._lines = []
        if self._in_copy >= self.batch:
            self.flush()

    def _open(self) -> None:
        stack = ExitStack()
        stack.enter_context(transaction.atomic())
        cursor = stack.enter_context(connection.cursor())
        # A batch lost to a crash is harmless (an ingest starts over), so its commit need not
        # wait for the WAL to reach the disk.
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
        table = BulkRow._meta.db_table
        self._copy = stack.enter_context(
            cursor.cursor.copy(f"COPY {table} ({', '.join(FIELDS)}) FROM STDIN")
        )
        self._stack = stack


#: The columns the preview writes back to a row.
PLAN_FIELDS = ("plan", "etag", "diff", "errors", "payload")


def rows_plan_save(rows: Sequence[BulkRow]) -> None:
    """Write the preview's columns of ``rows`` back in one statement.

    ``bulk_update`` builds a ``CASE WHEN id = ...`` expression per column and row in Python
    (about 1 ms a row at 100,000 rows, seen with py-spy); on PostgreSQL one
    ``UPDATE ... FROM (VALUES ...)`` does the same work in the server.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        BulkRow.objects.bulk_update(list(rows), list(PLAN_FIELDS))
        return
    table = BulkRow._meta.db_table
    values = ", ".join(["(%s::bigint, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for row in rows:
        params.extend((row.id, row.plan, row.etag, row.diff, row.errors, row.payload))
    sets = ", ".join(f"{name} = v.{name}" for name in PLAN_FIELDS)
    # Table and column names are constants of this module, never input.
    sql = (
        f"UPDATE {table} AS t SET {sets} FROM (VALUES {values}) "  # noqa: S608
        f"AS v(id, {', '.join(PLAN_FIELDS)}) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rows_analyze() -> None:
    """Refresh PostgreSQL's statistics of the rows table after a bulk change (no-op elsewhere).

    Without fresh figures the planner keeps believing what it saw before: after an ingest
    it thought every row's plan was still "pending", picked the (job, plan, status) index for
    the runner's claims and sorted every open row on each claim (80 ms at 100,000 rows).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {BulkRow._meta.db_table}")
