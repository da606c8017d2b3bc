"""Bulk jobs (CSV import, export, bulk delete, bulk status change) and their per-row results.

Enrollments themselves live in DPS; the portal only keeps the jobs that change or read them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobKind(models.TextChoices):
    IMPORT = "import", "CSV import"
    EXPORT = "export", "Export all enrollments"
    DELETE_SELECTED = "delete_selected", "Delete selected enrollments"
    DELETE_REGISTRATIONS = "delete_registrations", "Delete registration records of a group"
    SET_STATUS = "set_status", "Enable or disable enrollments"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    VALIDATING = "validating", "Validating"
    AWAITING_CONFIRMATION = "awaiting_confirmation", "Awaiting confirmation"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
    FAILED = "failed", "Failed"


ACTIVE_STATES = (
    JobState.QUEUED,
    JobState.VALIDATING,
    JobState.RUNNING,
    JobState.PAUSED,
    JobState.CANCELLING,
)
FINAL_STATES = (
    JobState.CANCELLED,
    JobState.COMPLETED,
    JobState.COMPLETED_WITH_ERRORS,
    JobState.FAILED,
)


class PauseReason(models.TextChoices):
    NONE = "", "-"
    NEEDS_SIGNIN = "needs_signin", "Needs sign-in"
    FORBIDDEN = "forbidden", "Permission missing"
    # Entra ID (tokens) or ARM (permissions) could not be reached: the sweep resumes the job.
    SERVICE_UNAVAILABLE = "service_unavailable", "Azure could not be reached"


class RowPlan(models.TextChoices):
    """What the preview decided for a row."""

    PENDING = "pending", "Not yet compared"
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    UNCHANGED = "unchanged", "Unchanged"
    DELETE = "delete", "Delete"
    INVALID = "invalid", "Invalid"


class RowStatus(models.TextChoices):
    """Where a row stands in the run; ``sending`` means a DPS call may have carried it."""

    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CONFLICT = "conflict", "Conflict"
    SKIPPED = "skipped", "Skipped"


class BulkJob(models.Model):
    """One bulk job on one DPS instance, acting as its owner.

    The job row is the state machine: workers receive only its id, read what to do here and
    write progress back. ``heartbeat_at`` lets the periodic sweep find jobs whose worker died;
    counts are denormalised so the progress poll costs one row read. ``options`` holds the
    operator's choices (default operation, include keys, group id, selected ids).
    """

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    state = models.CharField(
        max_length=32, choices=JobState.choices, default=JobState.QUEUED, db_index=True
    )
    pause_reason = models.CharField(
        max_length=32, choices=PauseReason.choices, default=PauseReason.NONE, blank=True
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bulk_jobs"
    )
    instance = models.ForeignKey(
        "instances.DpsInstance", on_delete=models.CASCADE, related_name="bulk_jobs"
    )
    options = models.JSONField(default=dict, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    source_path = models.CharField(max_length=1024, blank=True)
    source_size = models.BigIntegerField(default=0)
    result_path = models.CharField(max_length=1024, blank=True)
    error = models.TextField(blank=True)
    total_rows = models.IntegerField(default=0)
    count_create = models.IntegerField(default=0)
    count_update = models.IntegerField(default=0)
    count_unchanged = models.IntegerField(default=0)
    count_delete = models.IntegerField(default=0)
    count_invalid = models.IntegerField(default=0)
    count_done = models.IntegerField(default=0)
    count_failed = models.IntegerField(default=0)
    count_conflict = models.IntegerField(default=0)
    count_skipped = models.IntegerField(default=0)
    progress_done = models.IntegerField(default=0)
    progress_total = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    run_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=("owner", "-id")),
            models.Index(fields=("state", "heartbeat_at")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} on {self.instance_id} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def state_label(self) -> str:
        if self.state == JobState.PAUSED and self.pause_reason:
            return f"Paused: {self.get_pause_reason_display().lower()}"
        return self.get_state_display()


class BulkRow(models.Model):
    """One input row of a job: what the file said, what the preview planned, what happened.

    ``payload`` is the DPS enrollment JSON built from the row (text, written with COPY or
    executemany for speed); ``errors`` is a JSON list of ``{"column", "message"}``. ``etag`` is
    the version the preview saw: the run sends it, so a record changed since becomes a
    conflict instead of being overwritten. ``status`` moves pending → sending → done/failed/
    conflict/skipped; the outcome and the status change are written in one transaction.
    """

    # No index and no database constraint of its own: the (job, line_no) index serves every
    # lookup by job, and Django deletes a job's rows with it (on_delete runs in Python). The
    # constraint's per-row trigger alone made storing rows about 1.7 times slower
    # (bench/csv_validate.py), which matters at a million rows.
    job = models.ForeignKey(
        BulkJob,
        on_delete=models.CASCADE,
        related_name="rows",
        db_index=False,
        db_constraint=False,
    )
    line_no = models.IntegerField()
    registration_id = models.CharField(max_length=1024, blank=True)
    reg_key = models.CharField(max_length=1024, blank=True)
    operation = models.CharField(max_length=16, blank=True)
    payload = models.TextField(blank=True)
    errors = models.TextField(blank=True)
    plan = models.CharField(max_length=16, choices=RowPlan.choices, default=RowPlan.PENDING)
    etag = models.CharField(max_length=256, blank=True)
    diff = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=RowStatus.choices, default=RowStatus.PENDING)
    attempts = models.SmallIntegerField(default=0)
    lease = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("job", "line_no")
        indexes = [
            models.Index(fields=("job", "line_no")),
            models.Index(fields=("job", "reg_key")),
            models.Index(fields=("job", "plan", "status")),
            # The runner's claims walk the rows still to send in id order; a partial index of
            # exactly those rows keeps the walk off the rows done, invalid or unchanged, however
            # large the job. Claims spell out both conditions so the planner can use it.
            models.Index(
                fields=("job", "id"),
                name="bulkrow_rows_to_send",
                condition=models.Q(
                    status__in=("pending", "sending"), plan__in=("create", "update", "delete")
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"line {self.line_no} {self.registration_id} ({self.plan}/{self.status})"
