"""Append-only guard and the indexes behind the audit pages.

* On PostgreSQL a trigger refuses UPDATE and DELETE on ``audit_auditevent``. DELETE passes
  only when the transaction has ``SET LOCAL audit.retention = 'on'``, which nothing but
  ``manage.py audit_retention`` does. One UPDATE passes: setting ``actor_id`` to NULL and
  nothing else, which is what ``on_delete=SET_NULL`` issues when a user account is removed
  (``actor`` is outside the hash; the actor snapshot stays). TRUNCATE is not guarded:
  Django's test flush uses it, and whoever may TRUNCATE may also drop the trigger; the hash
  chain is what reveals that kind of tampering.
* Composite indexes ``(column, time, id)`` serve each list filter with keyset pagination
  ordered by ``(time, id)`` newest first, so a page never sorts or skips rows.
* A trigram index (when ``pg_trgm`` can be installed) serves the free-text search.

Everything except the plain indexes is a no-op on SQLite.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "audit_auditevent"

# The expression audit.selectors searches; it must stay byte-identical to be indexed.
SEARCH_EXPRESSION = (
    "(actor_upn || ' ' || actor_name || ' ' || actor_oid || ' ' || target_type || ' ' "
    "|| target_id || ' ' || dps_instance || ' ' || action || ' ' || message)"
)

BTREE_INDEXES = {
    "audit_ev_time_id": "(time, id)",
    "audit_ev_actor_time_id": "(actor_oid, time, id)",
    "audit_ev_upn_time_id": "(actor_upn, time, id)",
    "audit_ev_action_time_id": "(action, time, id)",
    "audit_ev_dps_time_id": "(dps_instance, time, id)",
    "audit_ev_outcome_time_id": "(outcome, time, id)",
    "audit_ev_target_time_id": "(target_type, target_id, time, id)",
}

GUARD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('audit.retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE refused (only manage.py audit_retention deletes)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- ON DELETE SET NULL of the actor foreign key: the only change allowed.
    IF NEW.actor_id IS NULL AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE refused'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE};
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
"""

DROP_GUARD = f"""
DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE};
DROP FUNCTION IF EXISTS audit_event_guard();
"""


def _trgm_available(cursor: Any) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    return cursor.fetchone() is not None


def forwards(apps: Any, schema_editor: Any) -> None:
    conn = schema_editor.connection
    with conn.cursor() as cursor:
        for name, columns in BTREE_INDEXES.items():
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} {columns}")
        if conn.vendor != "postgresql":
            return
        cursor.execute(GUARD_FUNCTION)
        if _trgm_available(cursor):
            # A trusted extension since PostgreSQL 13: the database owner may create it.
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS audit_ev_search_trgm ON {TABLE} "
                f"USING gin ({SEARCH_EXPRESSION} gin_trgm_ops)"
            )


def backwards(apps: Any, schema_editor: Any) -> None:
    conn = schema_editor.connection
    with conn.cursor() as cursor:
        for name in BTREE_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        if conn.vendor != "postgresql":
            return
        cursor.execute("DROP INDEX IF EXISTS audit_ev_search_trgm")
        cursor.execute(DROP_GUARD)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("signin", "Signed in"),
                    ("signin_failed", "Sign-in failed"),
                    ("signout", "Signed out"),
                    ("denied", "Permission denied"),
                    ("reauth", "Re-authentication required"),
                    ("permissions_refresh", "Permissions refreshed"),
                    ("instance_create", "DPS instance registered"),
                    ("instance_update", "DPS instance changed"),
                    ("instance_delete", "DPS instance removed"),
                    ("enrollment_read", "Enrollment read"),
                    ("enrollment_create", "Enrollment created"),
                    ("enrollment_update", "Enrollment updated"),
                    ("enrollment_delete", "Enrollment deleted"),
                    ("enrollmentgroup_create", "Enrollment group created"),
                    ("enrollmentgroup_update", "Enrollment group updated"),
                    ("enrollmentgroup_delete", "Enrollment group deleted"),
                    ("registration_delete", "Registration record deleted"),
                    ("attestation_reveal", "Attestation keys revealed"),
                    ("job_create", "Job created"),
                    ("job_start", "Job started"),
                    ("job_cancel", "Job cancelled"),
                    ("job_finish", "Job finished"),
                    ("export", "Exported"),
                    ("checkpoint", "Retention checkpoint"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
