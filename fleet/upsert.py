"""Write a page of index rows fast: COPY into a staging table, then one INSERT … ON CONFLICT.

The ORM's ``bulk_create`` spends most of a pass's time preparing values field by field; a
pass writes a million rows, so on PostgreSQL rows go through COPY (psycopg's binary-free text
protocol, one round trip per page) into a temporary table, and one statement merges them.
Elsewhere (SQLite, the embedded default) ``bulk_create`` with ``update_conflicts`` does it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from fleet.models import IndexedRecord

_JSON = {"tags", "desired", "iot_hubs", "drift_pending"}


def _columns(fields: Sequence[str]) -> list[str]:
    names: list[str] = []
    for name in fields:
        f = IndexedRecord._meta.get_field(name)
        names.append(str(getattr(f, "column", name)))
    return names


def insert_new(rows: Iterable[Sequence[Any]], update: Sequence[str]) -> bool:
    """COPY rows none of whose keys is in the index yet; return False (nothing written) if one is.

    Each row holds the values of ``instance_id``, ``kind``, ``key`` and ``update``, in that
    order (:func:`as_values` makes them from dicts); :func:`_copy` serializes the JSON ones.
    ``rows`` may be a generator: on PostgreSQL each row goes to the server as soon as it is
    built, so the server stores a page while the rest of it is still being extracted. A key the
    portal wrote meanwhile rolls the savepoint back; the caller then merges the page. Elsewhere it
    returns False at once (the merge is the only path).
    """
    if connection.vendor != "postgresql":
        return False
    import psycopg  # only here: the PostgreSQL path

    try:
        with transaction.atomic():  # a savepoint: a key written meanwhile falls back
            _copy(rows, update, into="fleet_indexedrecord")
    except (IntegrityError, psycopg.IntegrityError):  # COPY's own error is not wrapped
        return False
    return True


def as_values(rows: Iterable[dict[str, Any]], update: Sequence[str]) -> Iterator[list[Any]]:
    """Yield each row dict as the values :func:`insert_new` takes."""
    fields = ["instance_id", "kind", "key", *update]
    for row in rows:
        yield [row.get(name) for name in fields]


def upsert_records(
    rows: list[dict[str, Any]], update: Sequence[str], *, new_only: bool = False
) -> None:
    """Insert or update index rows given as dicts of field values (unique on instance/kind/key).

    Each dict holds ``instance_id``, ``kind``, ``key`` and every field in ``update``.
    ``new_only`` (none of the keys was in the index when the page was read, as in a first
    pass) lets PostgreSQL COPY straight into the table; a key the portal wrote meanwhile
    makes it fall back to the merge.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        IndexedRecord.objects.bulk_create(
            [IndexedRecord(**row) for row in rows],
            update_conflicts=True,
            unique_fields=("instance", "kind", "key"),
            update_fields=list(update),
        )
        return
    if new_only and insert_new(as_values(rows, update), update):
        return
    _copy(as_values(rows, update), update, into="fleet_stage")


def _copy(rows: Iterable[Sequence[Any]], update: Sequence[str], *, into: str) -> None:
    """COPY value rows (as :func:`insert_new` takes) into ``into``; from staging, merge them."""
    fields = ["instance_id", "kind", "key", *update, "indexed_at", "registration_status"]
    cols = _columns(fields)
    col_list = ", ".join(cols)
    json_at = [i for i, name in enumerate(fields) if name in _JSON]
    dumps = json.dumps
    tail = [timezone.now(), ""]  # indexed_at; registration_status: a pass never reads it here
    with connection.cursor() as cur:
        if into == "fleet_stage":
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS fleet_stage ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {col_list} FROM fleet_indexedrecord WITH NO DATA"
            )
        with cur.cursor.copy(f"COPY {into} ({col_list}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                values = [*row, *tail]
                for i in json_at:
                    if values[i] is not None:
                        values[i] = dumps(values[i])
                write_row(values)
        if into != "fleet_stage":
            return
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _columns([*update, "indexed_at"]))
        cur.execute(
            f"INSERT INTO fleet_indexedrecord ({col_list}) SELECT {col_list} "  # noqa: S608
            f"FROM fleet_stage ON CONFLICT (instance_id, kind, key) DO UPDATE SET {updates}"
        )
        cur.execute("DELETE FROM fleet_stage")  # cheaper than TRUNCATE for one page
