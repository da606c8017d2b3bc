"""PostgreSQL: one index on the upper-cased id, in byte order, for both sort and prefix search.

Lists sorted ids by ``upper(record_id)`` (index fleet_rec_id_upper) and searched id prefixes
with ``LIKE 'X%'`` (fleet_rec_id_prefix, ``text_pattern_ops``, migration 0002): two entries
per row for one column. In the "C" collation the ordinary btree answers LIKE prefixes too, so
fleet_rec_id_upper becomes ``(instance_id, kind, upper(record_id) COLLATE "C")`` and the
prefix index goes; fleet.selectors.id_order says ``COLLATE "C"`` in the queries. Ids then
sort in byte order whatever the database's collation. SQLite keeps the model's index.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_FORWARD = [
    "DROP INDEX IF EXISTS fleet_rec_id_prefix",
    "DROP INDEX IF EXISTS fleet_rec_id_upper",
    "CREATE INDEX fleet_rec_id_upper ON fleet_indexedrecord "
    '(instance_id, kind, (upper(record_id) COLLATE "C"))',
]
_BACKWARD = [
    "DROP INDEX IF EXISTS fleet_rec_id_upper",
    "CREATE INDEX fleet_rec_id_upper ON fleet_indexedrecord (instance_id, kind, upper(record_id))",
    "CREATE INDEX IF NOT EXISTS fleet_rec_id_prefix ON fleet_indexedrecord "
    "(instance_id, kind, upper(record_id) text_pattern_ops)",
]


def _postgresql(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("fleet", "0004_no_row_lock_on_the_instance")]

    operations = [migrations.RunPython(_postgresql(_FORWARD), _postgresql(_BACKWARD))]
