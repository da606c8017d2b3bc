"""Fast storage of parsed rows: COPY on PostgreSQL, executemany elsewhere.

The ORM's ``bulk_create`` builds a model instance per row; at a million rows that alone costs
more than parsing, so rows go to the table as plain tuples in batches.
"""

from __future__ import annotations

import io
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


def _copy_text(value: object) -> str:
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def rows_insert(rows: Sequence[RowTuple]) -> None:
    """Insert rows (tuples in :data:`FIELDS` order) in one statement or COPY."""
    if not rows:
        return
    table = BulkRow._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            buf = io.StringIO()
            for row in rows:
                buf.write("\t".join(_copy_text(v) for v in row))
                buf.write("\n")
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {table} ({', '.join(FIELDS)}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
        else:
            marks = ", ".join(["%s"] * len(FIELDS))
            # Table and column names are constants of this module, never input.
            sql = f"INSERT INTO {table} ({', '.join(FIELDS)}) VALUES ({marks})"  # noqa: S608
            cursor.executemany(sql, rows)


class RowWriter:
    """Buffer row tuples and insert them ``batch`` at a time."""

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
            rows_insert(self._pending)
            self.written += len(self._pending)
            self._pending = []
