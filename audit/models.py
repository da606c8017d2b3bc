"""The audit record."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    SIGNIN = "signin", "Signed in"
    SIGNIN_FAILED = "signin_failed", "Sign-in failed"
    SIGNOUT = "signout", "Signed out"
    DENIED = "denied", "Permission denied"
    REAUTH = "reauth", "Re-authentication required"
    PERMISSIONS_REFRESH = "permissions_refresh", "Permissions refreshed"
    INSTANCE_CREATE = "instance_create", "DPS instance registered"
    INSTANCE_UPDATE = "instance_update", "DPS instance changed"
    INSTANCE_DELETE = "instance_delete", "DPS instance removed"
    ENROLLMENT_READ = "enrollment_read", "Enrollment read"
    ENROLLMENT_CREATE = "enrollment_create", "Enrollment created"
    ENROLLMENT_UPDATE = "enrollment_update", "Enrollment updated"
    ENROLLMENT_DELETE = "enrollment_delete", "Enrollment deleted"
    ENROLLMENTGROUP_CREATE = "enrollmentgroup_create", "Enrollment group created"
    ENROLLMENTGROUP_UPDATE = "enrollmentgroup_update", "Enrollment group updated"
    ENROLLMENTGROUP_DELETE = "enrollmentgroup_delete", "Enrollment group deleted"
    REGISTRATION_DELETE = "registration_delete", "Registration record deleted"
    ATTESTATION_REVEAL = "attestation_reveal", "Attestation keys revealed"
    JOB_CREATE = "job_create", "Job created"
    JOB_START = "job_start", "Job started"
    JOB_CANCEL = "job_cancel", "Job cancelled"
    JOB_FINISH = "job_finish", "Job finished"
    EXPORT = "export", "Exported"
    CHECKPOINT = "checkpoint", "Retention checkpoint"
    CHAIN_KEYED = "chain_keyed", "Audit chain keyed"
    CHANGED_OUTSIDE_PORTAL = "changed_outside_portal", "Changed outside the portal"


class AuditTargetType(models.TextChoices):
    """What an audit row is about (``AuditEvent.target_type``); the filter offers these."""

    ENROLLMENT = "enrollment", "Enrollment"
    ENROLLMENT_GROUP = "enrollment_group", "Enrollment group"
    REGISTRATION = "registration", "Registration record"
    BULK_JOB = "bulk_job", "Bulk job"
    DPS_INSTANCE = "dps_instance", "DPS instance"
    VIEW = "view", "Page"
    AUDIT_LOG = "audit_log", "Audit log"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"


class AuditEvent(models.Model):
    """One thing done (or refused) through the portal, by whom, where, with what result.

    Rows are append-only: only :func:`audit.services.audit_record` creates them, nothing in
    the application updates or deletes them. Each row stores as ``hash`` the HMAC-SHA256 of its
    own canonical content together with ``prev_hash``, the hash of the row written before it,
    under the key ``key_id`` names (``AUDIT_HMAC_KEYS``, never stored here), so removing,
    editing or forging a row breaks the chain (``manage.py audit_verify`` finds where).

    The actor is kept twice: ``actor`` links to the user while the account exists (SET_NULL
    afterwards), and the ``actor_oid``/``actor_upn``/``actor_name`` snapshot says who it was
    at the time, whatever happens to the account later. ``actor`` is therefore not part of
    the hash; the snapshot is. ``before``/``after`` hold JSON with secrets redacted.
    """

    time = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_oid = models.CharField(max_length=64, blank=True, db_index=True)
    actor_upn = models.CharField(max_length=255, blank=True)
    actor_name = models.CharField(max_length=255, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    dps_instance = models.CharField(max_length=128, blank=True, db_index=True)
    action = models.CharField(max_length=64, choices=AuditAction.choices, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=AuditOutcome.choices, db_index=True)
    dps_status = models.PositiveSmallIntegerField(null=True, blank=True)
    dps_error_code = models.CharField(max_length=64, blank=True)
    tracking_id = models.CharField(max_length=128, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # Empty on rows written before the chain was keyed (plain SHA-256).
    key_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=("target_type", "target_id"))]

    def __str__(self) -> str:
        who = self.actor_upn or self.actor_oid or "anonymous"
        return f"{self.time:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.outcome}"


class AuditChainHead(models.Model):
    """The single row that serialises writers and remembers the newest hash.

    Updating it first inside the writer's transaction takes a row lock on PostgreSQL and
    the database write lock on SQLite, so two writers can never chain onto the same row.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    count = models.BigIntegerField(default=0)
    # audit.chain.head_mac(last_hash, key_id): a head moved back over deleted rows fails it.
    key_id = models.CharField(max_length=16, blank=True, default="")
    mac = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"audit chain head #{self.count}"


class AuditRetentionRun(models.Model):
    """One run of ``manage.py audit_retention``: the record that lets it delete.

    On PostgreSQL the append-only trigger lets a DELETE of audit events through only in the
    transaction that inserted a run (``txid`` is stamped by the database on insert, whatever
    the insert says) and only for events below ``delete_below_id``. Runs themselves can be
    neither changed nor deleted, so every lifting of the guard stays on record.
    """

    time = models.DateTimeField(auto_now_add=True)
    delete_below_id = models.BigIntegerField()
    txid = models.BigIntegerField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"audit retention run {self.pk} below event {self.delete_below_id}"


class SigninFailureWindow(models.Model):
    """Failed sign-ins of one client address in the current window (audit.throttle).

    The first ``AUDIT_SIGNIN_FAILED_BURST`` failures of a window are audit rows of their
    own; the rest are only counted here, under this row's lock instead of the chain's, and
    written as one summarising ``signin_failed`` row once the window is over.
    """

    client_ip = models.CharField(max_length=45, unique=True)  # "" when unknown
    started = models.DateTimeField()
    written = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    last_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.client_ip or 'unknown'}: {self.written} + {self.suppressed} since {self.started}"
