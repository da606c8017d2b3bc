"""Fewer index entries per row, so a pass writes faster (every row of a first pass pays each).

- ``seen_pass`` loses its index: only the end of a pass asks "not seen by this pass", once, and
  an unindexed column lets a later pass mark an unchanged row seen with a HOT update (no new
  index entry); ``fillfactor`` 90 leaves each page the room a HOT update needs.
- The order a pass reads registration states in no longer has an index of its own (0002's
  ``fleet_rec_regread_order``, an entry for every row): never-read rows come newest first from
  ``fleet_rec_updated``, which carries ``registration_read_at``; read ones from a partial index
  of the rows read, which also answers the overview's counts.
- Expiry and hub indexes hold only the rows that have a value (X.509 records; enrollments that
  name a hub); the expiry index carries the facet fields, so "expires within N days" counts
  its facets without reading the rows.
- Device id search is indexed only where the device id says something the registration id
  does not: the search matches the registration id or the device id, so a row whose device id
  is empty or equal to its registration id is found through the registration id's indexes.
  Partial indexes skip those rows (DPS's default device id is the registration id);
  fleet.selectors.records_matching states the same condition, and statistics of the
  upper-cased device id tell the planner how few rows a search matches, so it uses them.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

_DISTINCT_DEVICE = "device_id <> record_id AND device_id <> ''"

_FORWARD = [
    "DROP INDEX IF EXISTS fleet_rec_regread_order",
    "DROP INDEX IF EXISTS fleet_rec_device_trgm",
    "DROP INDEX IF EXISTS fleet_rec_device_prefix",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_trgm ON fleet_indexedrecord "
    f"USING gin (upper(device_id) gin_trgm_ops) WHERE {_DISTINCT_DEVICE}",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_prefix ON fleet_indexedrecord "
    f"(instance_id, kind, upper(device_id) text_pattern_ops) WHERE {_DISTINCT_DEVICE}",
    "ALTER TABLE fleet_indexedrecord SET (fillfactor = 90)",
    # Statistics of the upper-cased device id: without a full index on it, the planner would
    # guess a device id search matches 1% of the rows and scan in id order instead of using
    # the partial indexes (PostgreSQL 14 and later; see _postgresql).
    "CREATE STATISTICS IF NOT EXISTS fleet_rec_device_upper ON (upper(device_id)) "
    "FROM fleet_indexedrecord",
]
_BACKWARD = [
    "DROP INDEX IF EXISTS fleet_rec_device_trgm",
    "DROP INDEX IF EXISTS fleet_rec_device_prefix",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_trgm ON fleet_indexedrecord "
    "USING gin (upper(device_id) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_device_prefix ON fleet_indexedrecord "
    "(instance_id, kind, upper(device_id) text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS fleet_rec_regread_order ON fleet_indexedrecord "
    "(instance_id, kind, registration_read_at ASC NULLS FIRST, updated DESC NULLS LAST)",
    "ALTER TABLE fleet_indexedrecord RESET (fillfactor)",
    "DROP STATISTICS IF EXISTS fleet_rec_device_upper",
]


def _postgresql(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return  # SQLite: no trigram or text_pattern_ops indexes, no fillfactor
        expression_statistics = schema_editor.connection.pg_version >= 140000
        for sql in statements:
            if "STATISTICS" in sql and not expression_statistics:
                continue
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0002_postgresql_search_indexes"),
        ("instances", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="indexedrecord",
            name="fleet_rec_updated",
        ),
        migrations.RemoveIndex(
            model_name="indexedrecord",
            name="fleet_rec_expiry",
        ),
        migrations.RemoveIndex(
            model_name="indexedrecord",
            name="fleet_rec_hub",
        ),
        migrations.RemoveIndex(
            model_name="indexedrecord",
            name="fleet_rec_pass",
        ),
        migrations.RemoveIndex(
            model_name="indexedrecord",
            name="fleet_rec_regread",
        ),
        migrations.AddIndex(
            model_name="indexedrecord",
            index=models.Index(
                fields=["instance", "kind", "updated"],
                include=("registration_read_at",),
                name="fleet_rec_updated",
            ),
        ),
        migrations.AddIndex(
            model_name="indexedrecord",
            index=models.Index(
                condition=models.Q(("cert_not_after__isnull", False)),
                fields=["instance", "kind", "cert_not_after"],
                include=("status", "attestation", "iot_edge"),
                name="fleet_rec_expiry",
            ),
        ),
        migrations.AddIndex(
            model_name="indexedrecord",
            index=models.Index(
                condition=models.Q(("iot_hub_host_name", ""), _negated=True),
                fields=["instance", "kind", "iot_hub_host_name"],
                name="fleet_rec_hub",
            ),
        ),
        migrations.AddIndex(
            model_name="indexedrecord",
            index=models.Index(
                condition=models.Q(("registration_read_at__isnull", False)),
                fields=["instance", "kind", "registration_read_at"],
                name="fleet_rec_regread",
            ),
        ),
        migrations.RunPython(_postgresql(_FORWARD), _postgresql(_BACKWARD)),
    ]
