"""One index for the unique key, the id sort and id prefixes: ``key`` in byte order.

Lists sorted ids and searched id prefixes with ``(instance, kind, upper(record_id) COLLATE
"C")`` (fleet_rec_id_upper, migration 0005), beside the unique key ``(instance, kind, key)``:
two random-order entries a row for one id, and index entries are most of what a first pass
costs PostgreSQL. ``key`` is the lower-cased id, so on PostgreSQL its collation becomes "C"
and the unique key's index answers the sort (byte order) and ``LIKE 'x%'`` prefixes too;
fleet_rec_id_upper goes, on every database (SQLite compares bytes already).

The registration records' keys and the journal's get the same collation, so comparisons
between them and index rows keep using their indexes. A comparison of a "C" column with a
default-collation value is made in "C" (an explicit collation wins over the default), so
parameters and ``unnest(text[])`` still use the indexes.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_COLUMNS = [
    ("fleet_indexedrecord", "key"),
    ("fleet_indexedregistration", "key"),
    ("fleet_indexedregistration", "group_key"),
    ("fleet_portalwrite", "key"),
]


def _collate(collation: str) -> list[str]:
    return [
        f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(128) COLLATE "{collation}"'
        for table, column in _COLUMNS
    ]


# A column's new type drops its statistics: without them the planner walks the whole key
# index for an id prefix instead of its range (20 ms instead of 5 over a million rows).
_ANALYZE = "ANALYZE fleet_indexedrecord, fleet_indexedregistration, fleet_portalwrite"
_FORWARD = [*_collate("C"), _ANALYZE]
# Back to 0006: the database's default collation, and 0005's index on the upper-cased id
# (the backward RemoveIndex below has just made it as the model said before 0005).
_BACKWARD = [
    *_collate("default"),
    "DROP INDEX IF EXISTS fleet_rec_id_upper",
    "CREATE INDEX fleet_rec_id_upper ON fleet_indexedrecord "
    '(instance_id, kind, (upper(record_id) COLLATE "C"))',
    _ANALYZE,
]


def _postgresql(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("fleet", "0006_seen_pages")]

    operations = [
        migrations.RunPython(_postgresql(_FORWARD), _postgresql(_BACKWARD)),
        migrations.RemoveIndex(model_name="indexedrecord", name="fleet_rec_id_upper"),
    ]
