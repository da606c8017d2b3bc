"""PostgreSQL only: trigram indexes for id substring search, GIN for tag/desired containment,
and the order a pass reads registration states in.

On SQLite (the embedded default) the same queries run as scans of one instance's rows; there
is no index type for them there, so this migration does nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS fleet_rec_id_trgm ON fleet_indexedrecord "
    "USING gin (upper(record_id) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_trgm ON fleet_indexedrecord "
    "USING gin (upper(device_id) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_id_prefix ON fleet_indexedrecord "
    "(instance_id, kind, upper(record_id) text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_prefix ON fleet_indexedrecord "
    "(instance_id, kind, upper(device_id) text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_tags_gin ON fleet_indexedrecord "
    "USING gin (tags jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_desired_gin ON fleet_indexedrecord "
    "USING gin (desired jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_reg_id_trgm ON fleet_indexedregistration "
    "USING gin (upper(registration_id) gin_trgm_ops)",
    # The order a pass reads registration states in (SQLite cannot say NULLS FIRST in an index).
    "CREATE INDEX IF NOT EXISTS fleet_rec_regread_order ON fleet_indexedrecord "
    "(instance_id, kind, registration_read_at ASC NULLS FIRST, updated DESC NULLS LAST)",
]
_DROP = [
    "DROP INDEX IF EXISTS fleet_rec_id_trgm",
    "DROP INDEX IF EXISTS fleet_rec_device_trgm",
    "DROP INDEX IF EXISTS fleet_rec_id_prefix",
    "DROP INDEX IF EXISTS fleet_rec_device_prefix",
    "DROP INDEX IF EXISTS fleet_rec_tags_gin",
    "DROP INDEX IF EXISTS fleet_rec_desired_gin",
    "DROP INDEX IF EXISTS fleet_reg_id_trgm",
    "DROP INDEX IF EXISTS fleet_rec_regread_order",
]


def _run(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("fleet", "0001_initial")]

    operations = [migrations.RunPython(_run(_CREATE), _run(_DROP))]
