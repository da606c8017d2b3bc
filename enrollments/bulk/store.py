"""Fast storage of parsed rows: COPY on PostgreSQL, executemany elsewhere.

The ORM's ``bulk_create`` builds a model instance per row; at a million rows that alone costs
more than parsing, so rows go to the table as plain tuples in batches. (Storing batches from
a second thread was measured too: no faster, since formatting the rows needs the GIL.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, transaction

from enrollments.models import BulkRow

FIELDS = (
    "job_id",
    "line_no",
    "registration_id",
    "reg_key",
    "operation",
    "payload",
    "errors",
    "plan",
    "etag",
    "diff",
    "status",
    "attempts",
    "lease",
    "error_code",
    "message",
)
RowTuple = tuple[int, int, str, str, str, str, str, str, str, str, str, int, str, str, str]


def rows_insert(rows: Sequence[RowTuple]) -> None:
    """Insert rows (tuples in :data:`FIELDS` order) in one statement or COPY."""
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
    """Buffer row tuples and insert them ``batch`` at a time; :meth:`close` stores the rest."""

    def __init__(self, batch: int = 2000) -> None:
        self.batch = batch
        self._pending: list[RowTuple] = []
        self.written = 0

    def add(self, row: RowTuple) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch:
            self.flush()

    def extend(self, rows: Iterable[RowTuple]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            rows_insert(rows)
            self.written += len(rows)

    def close(self) -> None:
        self.flush()
