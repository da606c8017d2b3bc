"""Key the audit chain, seal the rows written before, and tighten the PostgreSQL guards.

* ``key_id`` on events and a signed chain head (``key_id``, ``mac``): see audit.chain.
* Existing rows keep their plain SHA-256 hashes. If there are any, one ``chain_keyed`` event
  is appended, signed with the first key of ``AUDIT_HMAC_KEYS``: it pins the unkeyed rows
  before it, and audit_verify accepts unkeyed rows only as a prefix sealed by a keyed row.
  This step needs the key, so migrating a database that holds events with DEBUG off and
  without ``AUDIT_HMAC_KEYS`` stops with an error naming it.
* The DELETE guard no longer trusts ``SET LOCAL audit.retention``, which any session could
  set: a DELETE passes only in the transaction that inserted an ``audit_auditretentionrun``
  row (its ``txid`` is stamped by a trigger) and only below that run's ``delete_below_id``.
  Runs are append-only. TRUNCATE of events, runs and the chain head is refused, and so is
  deleting the head. (Django's ``flush`` therefore fails on these tables, on purpose.)

Everything except the columns and the seal is a no-op on SQLite.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

EVENTS = "audit_auditevent"
RUNS = "audit_auditretentionrun"
HEAD = "audit_auditchainhead"

GUARDS = f"""
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (
            SELECT 1 FROM {RUNS} r
            WHERE r.txid = txid_current() AND OLD.id < r.delete_below_id
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE refused (only manage.py audit_retention deletes, below the cut its run records)'
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

CREATE OR REPLACE FUNCTION audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE OR REPLACE FUNCTION audit_retention_run_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.txid := txid_current();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS audit_event_no_truncate ON {EVENTS};
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {EVENTS}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
DROP TRIGGER IF EXISTS audit_run_stamp ON {RUNS};
CREATE TRIGGER audit_run_stamp BEFORE INSERT ON {RUNS}
    FOR EACH ROW EXECUTE FUNCTION audit_retention_run_stamp();
DROP TRIGGER IF EXISTS audit_run_append_only ON {RUNS};
CREATE TRIGGER audit_run_append_only BEFORE UPDATE OR DELETE ON {RUNS}
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
DROP TRIGGER IF EXISTS audit_run_no_truncate ON {RUNS};
CREATE TRIGGER audit_run_no_truncate BEFORE TRUNCATE ON {RUNS}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
DROP TRIGGER IF EXISTS audit_head_no_delete ON {HEAD};
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON {HEAD}
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
DROP TRIGGER IF EXISTS audit_head_no_truncate ON {HEAD};
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON {HEAD}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
"""  # noqa: S608 - constant table names, no input

DROP_GUARDS = f"""
DROP TRIGGER IF EXISTS audit_event_no_truncate ON {EVENTS};
DROP TRIGGER IF EXISTS audit_run_stamp ON {RUNS};
DROP TRIGGER IF EXISTS audit_run_append_only ON {RUNS};
DROP TRIGGER IF EXISTS audit_run_no_truncate ON {RUNS};
DROP TRIGGER IF EXISTS audit_head_no_delete ON {HEAD};
DROP TRIGGER IF EXISTS audit_head_no_truncate ON {HEAD};
DROP FUNCTION IF EXISTS audit_refuse();
DROP FUNCTION IF EXISTS audit_retention_run_stamp();
"""


def seal_unkeyed_rows(apps: Any, schema_editor: Any) -> None:
    from audit.services import audit_chain_seal

    event_model = apps.get_model("audit", "AuditEvent")
    if event_model.objects.using(schema_editor.connection.alias).exists():
        audit_chain_seal(
            event_model=event_model, head_model=apps.get_model("audit", "AuditChainHead")
        )


def guards_forwards(apps: Any, schema_editor: Any) -> None:
    conn = schema_editor.connection
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:  # no parameters: the % of RAISE stays as written
            cursor.execute(GUARDS)


def guards_backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # Back to 0002's guard function (it trusts SET LOCAL audit.retention).
    from importlib import import_module

    previous = import_module("audit.migrations.0002_append_only_and_indexes")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(DROP_GUARDS)
        cursor.execute(previous.GUARD_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_and_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditRetentionRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("time", models.DateTimeField(auto_now_add=True)),
                ("delete_below_id", models.BigIntegerField()),
                ("txid", models.BigIntegerField(blank=True, editable=False, null=True)),
            ],
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="mac",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
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
                    ("chain_keyed", "Audit chain keyed"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
        migrations.RunPython(seal_unkeyed_rows, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(guards_forwards, guards_backwards, elidable=False),
    ]
