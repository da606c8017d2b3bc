"""What people do with bulk jobs: create one, confirm it after the preview, cancel it.

The views call these; each checks the actor's rights here, on the server, whatever the page
showed. A job's further life (validation, preview, run, pause, resume) is
:mod:`enrollments.bulk.workflow`'s, driven by the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from enrollments.bulk import workflow
from enrollments.bulk.audit_trail import TARGET_TYPE, job_audit
from enrollments.bulk.files import upload_store
from enrollments.bulk.permissions import (
    VIEW_REQUIRED,
    job_missing,
    job_require,
    job_required,
    job_view_required,
    job_visible_kinds,
    kind_require,
    record_kind_of,
)
from enrollments.bulk.selection import selection_store
from enrollments.models import BulkJob, JobKind, JobState, PauseReason

__all__ = [
    "VIEW_REQUIRED",
    "job_cancel",
    "job_confirm",
    "job_create",
    "job_missing",
    "job_required",
    "job_view_required",
    "job_visible_kinds",
    "jobs_resume_for_user",
]


def job_create(
    *,
    owner: Any,
    instance: Any,
    kind: str,
    capabilities: Iterable[str],
    options: dict[str, Any] | None = None,
    upload: Any = None,
    source_name: str = "",
    selection: Iterable[tuple[str, str]] | None = None,
) -> BulkJob:
    """Create a job after checking the owner's capabilities; queue its first step.

    ``selection``: the ``(id, ETag)`` pairs a job acts on: a status change or a deletion of
    each, or an export of exactly those. A job with ``options["query"]`` instead ("select all
    N matching" in the fleet index) gets its rows from the worker's prepare step.
    """
    options = dict(options or {})
    try:
        kind_require(
            kind,
            capabilities,
            include_keys=bool(options.get("include_keys")),
            record_kind=record_kind_of(kind, options),
        )
    except PermissionDenied as exc:
        audit_record(
            actor=owner,
            action=AuditAction.DENIED,
            outcome=AuditOutcome.DENIED,
            target_type=TARGET_TYPE,
            dps_instance=instance.name,
            message=f"{kind}: {exc}",
        )
        raise
    path, size = (None, 0)
    if upload is not None:
        path, size = upload_store(upload, max_bytes=settings.BULK_UPLOAD_MAX_BYTES)
    with transaction.atomic():
        job = BulkJob.objects.create(
            kind=kind,
            owner=owner,
            instance=instance,
            options=options,
            source_name=source_name[:255],
            source_path=str(path or ""),
            source_size=size,
        )
        if selection is not None:
            job.options = {**job.options, "selected": selection_store(job, selection)}
            job.save(update_fields=["options"])
        elif kind == JobKind.DELETE_SELECTED and "query" not in options:
            _selected_rows_store(job, options)  # ids chosen on a list page
        job_audit(
            job,
            AuditAction.JOB_CREATE,
            after={"kind": kind, "source": source_name, "size": size, "options": job.options},
        )
        workflow.enqueue(workflow.PREPARE, job.pk)
    return job


def _selected_rows_store(job: BulkJob, options: dict[str, Any]) -> None:
    """Store a delete row per enrollment chosen on the list page; keep the ids out of options."""
    ids = [i.strip() for i in options.get("registration_ids", []) if i.strip()]
    # The etag each record had on the list page: the deletion applies to that version
    # only, so a record changed since ends as a conflict instead of being deleted.
    etags: dict[str, str] = dict(options.get("etags") or {})
    if not ids:
        raise ValidationError("Select at least one enrollment to delete.")
    job.options = {k: v for k, v in options.items() if k not in ("registration_ids", "etags")}
    selection_store(job, ((rid, str(etags.get(rid) or "")) for rid in ids))
    job.save(update_fields=["options"])


def job_confirm(*, job: BulkJob, actor: Any, capabilities: Iterable[str]) -> None:
    """Start a previewed job (the operator said go)."""
    if job.owner_id != actor.pk:
        raise PermissionDenied("Only the job's owner can confirm it.")
    job.refresh_from_db()  # the counts the preview stored decide what the job needs
    job_require(job, capabilities)
    with transaction.atomic():
        if not workflow.transition(
            job.pk,
            (JobState.AWAITING_CONFIRMATION,),
            JobState.RUNNING,
            confirmed_at=timezone.now(),
            run_started_at=timezone.now(),
        ):
            raise ValidationError("The job is not waiting for confirmation.")
        job.refresh_from_db()
        job.options = {**job.options, "phase": "run"}
        job.save(update_fields=["options"])
        job_audit(job, AuditAction.JOB_START, after=workflow.job_counts(job))
        workflow.enqueue(workflow.EXECUTE, job.pk)


def job_cancel(*, job: BulkJob, actor: Any) -> None:
    """Ask a job to stop; a job not being worked on stops at once."""
    if job.owner_id != actor.pk and not _is_admin(actor):
        raise PermissionDenied("Only the job's owner or a portal admin can cancel it.")
    idle = (JobState.QUEUED, JobState.AWAITING_CONFIRMATION, JobState.PAUSED)
    with transaction.atomic():
        # A job no worker holds stops at once; a worker notices the flag between chunks.
        stops_now = workflow.transition(job.pk, idle, JobState.CANCELLING)
        if not stops_now and not workflow.transition(
            job.pk, (JobState.VALIDATING, JobState.RUNNING), JobState.CANCELLING
        ):
            raise ValidationError("The job has already finished.")
        job.refresh_from_db()
        job_audit(job, AuditAction.JOB_CANCEL, actor=actor)
    if stops_now:
        workflow.job_cancel_finish(job.pk)


def _is_admin(user: Any) -> bool:
    from authn.backends import PORTAL_ADMIN

    return bool(user.has_perm(PORTAL_ADMIN))


def jobs_resume_for_user(user: Any) -> int:
    """Resume the user's jobs paused for sign-in (called when the user signs in)."""
    ids = list(
        BulkJob.objects.filter(
            owner=user, state=JobState.PAUSED, pause_reason=PauseReason.NEEDS_SIGNIN
        ).values_list("id", flat=True)
    )
    return sum(workflow.job_resume(i) for i in ids)
