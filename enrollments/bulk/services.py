"""Bulk job services: create, validate, preview, confirm, run, cancel, resume, export.

Views and tasks call these; the job row is the state machine and every transition that
matters is audited. Task bodies (``job_prepare``, ``job_execute``, ``jobs_sweep``) take ids
only and are safe to run twice: the row leases and statuses decide what is left to do.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from authn.exceptions import PermissionLookupFailed, ReauthRequired, TokenUnavailable
from enrollments.bulk.access import access
from enrollments.bulk.ingest import ingest_file
from enrollments.bulk.preview import plan_counts_store, preview_job
from enrollments.bulk.retention import rows_scrub
from enrollments.bulk.runner import fail_pending_deletes, rows_in_flight, run_rows
from enrollments.bulk.store import RowWriter
from enrollments.csv.reader import CsvFormatError
from enrollments.csv.references import references_check
from enrollments.dps.exceptions import DpsError, DpsForbidden, DpsUnauthorized
from enrollments.models import (
    BulkJob,
    BulkRow,
    JobKind,
    JobState,
    PauseReason,
    RowPlan,
    RowStatus,
)
from enrollments.ratelimit import bucket_for

log = logging.getLogger(__name__)

REQUIRED: dict[str, tuple[str, ...]] = {
    JobKind.IMPORT: ("enrollments.read", "enrollments.write"),
    JobKind.EXPORT: ("enrollments.read",),
    JobKind.DELETE_SELECTED: ("enrollments.delete",),
    JobKind.DELETE_REGISTRATIONS: ("registrations.read", "registrations.delete"),
}
#: What seeing a job (list, detail, progress, report, download) takes: reading what it touched.
#: A registration-deletion job lists registration records, so enrollments.read is not enough.
VIEW_REQUIRED: dict[str, tuple[str, ...]] = {
    JobKind.IMPORT: ("enrollments.read",),
    JobKind.EXPORT: ("enrollments.read",),
    JobKind.DELETE_SELECTED: ("enrollments.read",),
    JobKind.DELETE_REGISTRATIONS: ("registrations.read",),
}
DELETE_CAPABILITY = "enrollments.delete"


def _enqueue(task_name: str, job_id: int) -> None:
    from enrollments import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(job_id))


def _audit(job: BulkJob, action: str, outcome: str = AuditOutcome.SUCCESS, **kw: Any) -> None:
    audit_record(
        actor=job.owner,
        action=action,
        outcome=outcome,
        target_type="bulk_job",
        target_id=str(job.pk),
        dps_instance=job.instance.name,
        **kw,
    )


def _require(job_kind: str, caps: Iterable[str], *, include_keys: bool = False) -> None:
    have = set(caps)
    missing = [c for c in REQUIRED[job_kind] if c not in have]
    if include_keys and "attestation.reveal" not in have:
        missing.append("attestation.reveal")
    if missing:
        raise PermissionDenied("Your role on this DPS instance lacks: " + ", ".join(missing) + ".")


def job_required(job: BulkJob) -> tuple[str, ...]:
    """Return the capabilities running ``job`` takes: an import that deletes needs delete too."""
    needs = REQUIRED[job.kind]
    if job.kind == JobKind.IMPORT and job.count_delete:
        needs = (*needs, DELETE_CAPABILITY)
    return needs


def job_missing(job: BulkJob, caps: Iterable[str]) -> list[str]:
    """Return the capabilities ``job`` needs to run that ``caps`` lack, in a stable order."""
    have = {str(c) for c in caps}
    return [c for c in job_required(job) if c not in have]


def job_visible_kinds(caps: Iterable[str]) -> list[str]:
    """Return the job kinds whose jobs a holder of ``caps`` may see."""
    have = {str(c) for c in caps}
    return [kind for kind, needs in VIEW_REQUIRED.items() if all(c in have for c in needs)]


def _require_job(job: BulkJob, caps: Iterable[str]) -> None:
    missing = job_missing(job, caps)
    if missing == [DELETE_CAPABILITY]:
        raise PermissionDenied(
            f"This file deletes {job.count_delete:,} enrollment"
            f"{'s' if job.count_delete != 1 else ''}, and your role on this DPS instance "
            f"lacks {DELETE_CAPABILITY}."
        )
    if missing:
        raise PermissionDenied("Your role on this DPS instance lacks: " + ", ".join(missing) + ".")


def bulk_dir() -> Path:
    path = Path(settings.BULK_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


#
# Creating jobs
#


def upload_store(upload: Any, *, max_bytes: int) -> tuple[Path, int]:
    """Copy an uploaded file to the bulk directory chunk by chunk; refuse it over ``max_bytes``."""
    path = bulk_dir() / f"upload-{uuid.uuid4().hex}.csv"
    size = 0
    try:
        with path.open("wb") as out:
            chunks = (
                upload.chunks()
                if hasattr(upload, "chunks")
                else iter(lambda: upload.read(1 << 20), b"")
            )
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(
                        f"The file is larger than the limit of {max_bytes // (1024 * 1024):,} MB; split it."
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
    return path, size


def job_create(
    *,
    owner: Any,
    instance: Any,
    kind: str,
    capabilities: Iterable[str],
    options: dict[str, Any] | None = None,
    upload: Any = None,
    source_name: str = "",
) -> BulkJob:
    """Create a job after checking the owner's capabilities; queue its first step."""
    options = dict(options or {})
    try:
        _require(kind, capabilities, include_keys=bool(options.get("include_keys")))
    except PermissionDenied as exc:
        audit_record(
            actor=owner,
            action=AuditAction.DENIED,
            outcome=AuditOutcome.DENIED,
            target_type="bulk_job",
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
        if kind == JobKind.DELETE_SELECTED:
            ids = [i.strip() for i in options.get("registration_ids", []) if i.strip()]
            # The etag each record had on the list page: the deletion applies to that version
            # only, so a record changed since ends as a conflict instead of being deleted.
            etags: dict[str, str] = dict(options.get("etags") or {})
            if not ids:
                raise ValidationError("Select at least one enrollment to delete.")
            writer = RowWriter()
            for n, rid in enumerate(dict.fromkeys(ids), start=1):
                writer.add(
                    (
                        job.pk,
                        n,
                        rid,
                        rid.lower(),
                        "delete",
                        json.dumps({"registrationId": rid, "attestation": {"type": "none"}}),
                        "",
                        RowPlan.DELETE,
                        str(etags.get(rid) or "")[:256],
                        "",
                        RowStatus.PENDING,
                        0,
                        "",
                        "",
                        "",
                    )
                )
            writer.flush()
            job.options = {
                k: v for k, v in options.items() if k not in ("registration_ids", "etags")
            }
            job.save(update_fields=["options"])
        _audit(
            job,
            AuditAction.JOB_CREATE,
            after={"kind": kind, "source": source_name, "size": size, "options": job.options},
        )
        _enqueue("bulk_job_prepare_task", job.pk)
    return job


#
# Task bodies
#


def _stop_requested(job_id: int) -> bool:
    return BulkJob.objects.filter(pk=job_id, state=JobState.CANCELLING).exists()


def _heartbeat(job_id: int) -> None:
    BulkJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())


def _pause(job: BulkJob, reason: str, phase: str) -> None:
    job.state = JobState.PAUSED
    job.pause_reason = reason
    job.options = {**job.options, "phase": phase}
    job.save(update_fields=["state", "pause_reason", "options"])
    if reason == PauseReason.SERVICE_UNAVAILABLE:
        # An outage, not a refusal or an expired sign-in: nothing for the audit trail to
        # hold against the owner. The sweep resumes the job once Azure answers.
        log.warning("bulk job %s paused: Entra ID or ARM could not be reached", job.pk)
        return
    _audit(job, AuditAction.REAUTH, AuditOutcome.FAILED, message=f"job paused: {reason}")


def _fail(job: BulkJob, message: str) -> None:
    job.state = JobState.FAILED
    job.error = message[:4000]
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "error", "finished_at"])
    _audit(job, AuditAction.JOB_FINISH, AuditOutcome.FAILED, message=message[:500])
    _discard_source(job)


def _discard_source(job: BulkJob) -> None:
    """Drop what a job that just ended kept of its input: the upload and the rows' keys."""
    # The upload may hold keys: keep it no longer than the job needs it.
    if job.source_path:
        Path(job.source_path).unlink(missing_ok=True)
    # So may the rows' payloads; the report never shows them. The job has ended whatever
    # happens here: a failure is logged and the beat task (files_expire) scrubs it later.
    try:
        rows_scrub(job)
    except Exception:  # retried by the beat task
        log.exception("could not clear the keys of job %s's rows; the beat task retries", job.pk)


def _transition(job_id: int, from_states: Iterable[str], to_state: str, **fields: Any) -> bool:
    return bool(
        BulkJob.objects.filter(pk=job_id, state__in=list(from_states)).update(
            state=to_state, heartbeat_at=timezone.now(), **fields
        )
    )


def job_prepare(job_id: int) -> None:
    """Validate and preview an import (or list a group's registrations); then await confirmation.

    Export and "delete selected" need no preview and go straight to running.
    """
    if not _transition(
        job_id,
        (JobState.QUEUED, JobState.VALIDATING, JobState.PAUSED),
        JobState.VALIDATING,
        started_at=timezone.now(),
        pause_reason="",
    ):
        return
    job = BulkJob.objects.select_related("owner", "instance").get(pk=job_id)
    if job.kind in (JobKind.EXPORT, JobKind.DELETE_SELECTED):
        _start_running(job)
        return
    try:
        caps = access().capabilities(owner=job.owner, instance=job.instance)
        _require(job.kind, caps)
        client = access().client(owner=job.owner, instance=job.instance)
        bucket = bucket_for(job.instance.name)
        if job.kind == JobKind.IMPORT:
            if job.options.get("phase") != "preview":
                ingest_file(
                    job,
                    Path(job.source_path),
                    max_rows=settings.BULK_MAX_ROWS,
                    default_operation=job.options.get("default_operation", "upsert"),
                    should_stop=lambda: _stop_requested(job_id),
                )
                job.options = {**job.options, "phase": "preview"}
                job.save(update_fields=["options"])
            if _stop_requested(job_id):
                job_cancel_finish(job_id)
                return
            references_check(job)  # linked hubs and verified CAs, as the owner (issue 15)
            preview_job(
                job,
                client,
                bucket,
                can_reveal="attestation.reveal" in caps,
                should_stop=lambda: _stop_requested(job_id),
                heartbeat=lambda: _heartbeat(job_id),
            )
        else:
            _list_registrations(job, client, bucket)
    except ReauthRequired:
        _pause(job, PauseReason.NEEDS_SIGNIN, "prepare")
        return
    except (TokenUnavailable, PermissionLookupFailed):
        _pause(job, PauseReason.SERVICE_UNAVAILABLE, "prepare")
        return
    except CsvFormatError as exc:
        _fail(job, str(exc))
        return
    except PermissionDenied as exc:
        _fail(job, str(exc))
        return
    except (DpsForbidden, DpsUnauthorized) as exc:
        _fail(job, str(exc))
        return
    except DatabaseError as exc:
        # Left uncaught, the job stayed validating and the sweep requeued it every few
        # minutes, failing the same way each time (COPY refusing a NUL byte, say).
        _fail_database_error(job, exc)
        return
    if _stop_requested(job_id):
        job_cancel_finish(job_id)
        return
    _transition(job_id, (JobState.VALIDATING,), JobState.AWAITING_CONFIRMATION)


def _fail_database_error(job: BulkJob, exc: DatabaseError) -> None:
    """Fail ``job`` after a database error, naming the error without its detail.

    Only PostgreSQL's primary message is shown and logged: the detail and context of an error
    may quote the row being stored, keys included.
    """
    diag = getattr(exc.__cause__, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).split("\n", 1)[0]
    reason = f"{type(exc).__name__}: {primary[:300]}"
    log.error("Bulk job %s failed while being prepared: %s", job.pk, reason)
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()  # a lost connection: open a new one
    _fail(
        job,
        f"The database refused the job's data ({reason}); the job is stopped. Check the "
        "file, or ask an administrator to look at the worker log.",
    )


def _list_registrations(job: BulkJob, client: Any, bucket: Any) -> None:
    from enrollments.bulk.calls import paced

    group_id = job.options["group_id"]
    BulkRow.objects.filter(job=job).delete()
    writer = RowWriter()
    continuation: str | None = None
    n = 0
    while True:
        page = paced(
            bucket,
            lambda c=continuation: client.registration_query_for_group(
                group_id, page_size=1000, continuation=c
            ),
        )
        for reg in page.items:
            n += 1
            rid = reg.registration_id or ""
            writer.add(
                (
                    job.pk,
                    n,
                    rid,
                    rid.lower(),
                    "delete",
                    "",
                    "",
                    RowPlan.DELETE,
                    reg.etag or "",
                    "",
                    RowStatus.PENDING,
                    0,
                    "",
                    "",
                    "",
                )
            )
        continuation = page.continuation_token
        if not continuation:
            break
    writer.flush()
    plan_counts_store(job)


def job_confirm(*, job: BulkJob, actor: Any, capabilities: Iterable[str]) -> None:
    """Start a previewed job (the operator said go)."""
    if job.owner_id != actor.pk:
        raise PermissionDenied("Only the job's owner can confirm it.")
    job.refresh_from_db()  # the counts the preview stored decide what the job needs
    _require_job(job, capabilities)
    with transaction.atomic():
        if not _transition(
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
        _audit(job, AuditAction.JOB_START, after=_counts(job))
        _enqueue("bulk_job_execute_task", job.pk)


def _start_running(job: BulkJob) -> None:
    job.state = JobState.RUNNING
    job.run_started_at = timezone.now()
    job.options = {**job.options, "phase": "run"}
    job.save(update_fields=["state", "run_started_at", "options"])
    if job.kind == JobKind.DELETE_SELECTED:
        plan_counts_store(job)
    _audit(job, AuditAction.JOB_START, after=_counts(job))
    _enqueue("bulk_job_execute_task", job.pk)


def _counts(job: BulkJob) -> dict[str, int]:
    return {
        "create": job.count_create,
        "update": job.count_update,
        "unchanged": job.count_unchanged,
        "delete": job.count_delete,
        "invalid": job.count_invalid,
        "done": job.count_done,
        "failed": job.count_failed,
        "conflict": job.count_conflict,
        "skipped": job.count_skipped,
    }


def job_execute(job_id: int) -> None:
    """Apply the job's rows (or write the export); safe to run twice or concurrently."""
    job = BulkJob.objects.select_related("owner", "instance").get(pk=job_id)
    if job.state == JobState.CANCELLING:
        job_cancel_finish(job_id)
        return
    if job.state != JobState.RUNNING:
        return
    _heartbeat(job_id)
    try:
        caps = access().capabilities(owner=job.owner, instance=job.instance)
        _require(job.kind, caps, include_keys=bool(job.options.get("include_keys")))
        if job.kind == JobKind.IMPORT and DELETE_CAPABILITY not in caps:
            _refuse_deletes(job)
        client = access().client(owner=job.owner, instance=job.instance)
        bucket = bucket_for(job.instance.name)
        if job.kind == JobKind.EXPORT:
            from enrollments.bulk.export import export_run

            export_run(
                job,
                client,
                bucket,
                can_reveal="attestation.reveal" in caps,
                should_stop=lambda: _stop_requested(job_id),
                heartbeat=lambda: _heartbeat(job_id),
            )
            finished = not _stop_requested(job_id)
        else:
            finished = run_rows(
                job,
                client,
                bucket,
                should_stop=lambda: _stop_requested(job_id),
                lanes=int(getattr(settings, "BULK_CALLS_IN_FLIGHT", 1)),
                make_client=lambda: access().client(owner=job.owner, instance=job.instance),
            )
    except ReauthRequired:
        job.refresh_from_db()
        if job.state == JobState.RUNNING:
            _pause(job, PauseReason.NEEDS_SIGNIN, "run")
        return
    except (TokenUnavailable, PermissionLookupFailed):
        # The lanes gave their rows back (unsent ones pending, sent ones in doubt).
        job.refresh_from_db()
        if job.state == JobState.RUNNING:
            _pause(job, PauseReason.SERVICE_UNAVAILABLE, "run")
        return
    except PermissionDenied as exc:
        _abort_rows(job, str(exc))
        _fail(job, str(exc))
        return
    except (DpsForbidden, DpsUnauthorized) as exc:
        _abort_rows(job, str(exc))
        _fail(job, str(exc))
        return
    if not finished:
        job_cancel_finish(job_id)
        return
    if job.kind != JobKind.EXPORT and rows_in_flight(job):
        return  # another worker finishes the last chunk and the job
    job_finish(job_id)


def _refuse_deletes(job: BulkJob) -> None:
    """Fail the import's unsent delete rows: the owner lost the delete capability since the preview.

    Capabilities are read again when the job runs. Without this, the first bulk delete
    would meet DPS's 403 and fail the whole job, rows that were allowed included; instead
    the deletes fail each with the reason and the other rows are applied.
    """
    message = (
        f"Not deleted: your role on this DPS instance no longer has {DELETE_CAPABILITY}, "
        "checked when the job ran. Ask for the permission and import the delete rows again."
    )
    if fail_pending_deletes(job, message):
        _audit(job, AuditAction.DENIED, AuditOutcome.DENIED, message=message)
        job.refresh_from_db()


def _abort_rows(job: BulkJob, message: str) -> None:
    n = BulkRow.objects.filter(
        job=job,
        status__in=(RowStatus.PENDING,),
        plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE),
    ).update(status=RowStatus.SKIPPED, message=message[:2000])
    BulkJob.objects.filter(pk=job.pk).update(count_skipped=F("count_skipped") + n)


def job_finish(job_id: int) -> None:
    """Close a running job whose rows are all decided (once, whoever gets here first)."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().select_related("owner", "instance").get(pk=job_id)
        if job.state != JobState.RUNNING:
            return
        if (
            job.kind != JobKind.EXPORT
            and BulkRow.objects.filter(
                job=job,
                status__in=(RowStatus.PENDING, RowStatus.SENDING),
                plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE),
            ).exists()
        ):
            return
        errors = job.count_failed + job.count_conflict + job.count_invalid
        job.state = JobState.COMPLETED_WITH_ERRORS if errors else JobState.COMPLETED
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "finished_at"])
        _audit(job, AuditAction.JOB_FINISH, after={**_counts(job), "state": job.state})
    _discard_source(job)


def job_cancel(*, job: BulkJob, actor: Any) -> None:
    """Ask a job to stop; a job not being worked on stops at once."""
    if job.owner_id != actor.pk and not _is_admin(actor):
        raise PermissionDenied("Only the job's owner or a portal admin can cancel it.")
    idle = (JobState.QUEUED, JobState.AWAITING_CONFIRMATION, JobState.PAUSED)
    with transaction.atomic():
        # A job no worker holds stops at once; a worker notices the flag between chunks.
        stops_now = _transition(job.pk, idle, JobState.CANCELLING)
        if not stops_now and not _transition(
            job.pk, (JobState.VALIDATING, JobState.RUNNING), JobState.CANCELLING
        ):
            raise ValidationError("The job has already finished.")
        job.refresh_from_db()
        audit_record(
            actor=actor,
            action=AuditAction.JOB_CANCEL,
            outcome=AuditOutcome.SUCCESS,
            target_type="bulk_job",
            target_id=str(job.pk),
            dps_instance=job.instance.name,
        )
    if stops_now:
        job_cancel_finish(job.pk)


def job_cancel_finish(job_id: int) -> None:
    """Mark what was not applied as skipped and close the job as cancelled."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().select_related("instance", "owner").get(pk=job_id)
        if job.state != JobState.CANCELLING:
            return
        n = BulkRow.objects.filter(
            job=job,
            status=RowStatus.PENDING,
            plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE),
        ).update(status=RowStatus.SKIPPED, message="Cancelled before it was applied.")
        job.count_skipped += n
        job.state = JobState.CANCELLED
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "finished_at", "count_skipped"])
        _audit(job, AuditAction.JOB_FINISH, after={**_counts(job), "state": job.state})
    _discard_source(job)


def _is_admin(user: Any) -> bool:
    try:
        from authn.backends import app_roles_of

        return "Portal.Admin" in app_roles_of(user)
    except Exception:  # noqa: BLE001 - no roles known means not an admin
        return False


#
# Resuming
#


def job_resume(job_id: int) -> bool:
    """Resume a job paused for sign-in or an outage once the owner's tokens (and rights) answer."""
    job = BulkJob.objects.select_related("owner", "instance").get(pk=job_id)
    if job.state != JobState.PAUSED:
        return False
    try:
        access().check_signin(owner=job.owner, instance=job.instance)
        if job.pause_reason == PauseReason.SERVICE_UNAVAILABLE:
            access().capabilities(owner=job.owner, instance=job.instance)
    except (ReauthRequired, TokenUnavailable, PermissionLookupFailed):
        return False
    phase = job.options.get("phase")
    to_state = JobState.RUNNING if phase == "run" else JobState.VALIDATING
    if not _transition(job_id, (JobState.PAUSED,), to_state, pause_reason=""):
        return False
    _audit(
        job,
        AuditAction.JOB_START,
        message="resumed after sign-in"
        if job.pause_reason == PauseReason.NEEDS_SIGNIN
        else "resumed: Azure answers again",
    )
    with transaction.atomic():
        _enqueue("bulk_job_execute_task" if phase == "run" else "bulk_job_prepare_task", job_id)
    return True


def jobs_resume_for_user(user: Any) -> int:
    """Resume the user's jobs paused for sign-in (called when the user signs in)."""
    ids = list(
        BulkJob.objects.filter(
            owner=user, state=JobState.PAUSED, pause_reason=PauseReason.NEEDS_SIGNIN
        ).values_list("id", flat=True)
    )
    return sum(job_resume(i) for i in ids)


def jobs_sweep(*, stale_seconds: int | None = None) -> list[int]:
    """Re-queue jobs whose worker went silent, and resume jobs whose owner signed in again.

    A worker killed with SIGKILL leaves its message unacknowledged until the broker's
    visibility timeout; this sweep does not wait that long.
    """
    stale = timezone.now() - timedelta(seconds=stale_seconds or settings.BULK_STALE_SECONDS)
    requeued: list[int] = []
    for job in BulkJob.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=stale):
        _heartbeat(job.pk)
        with transaction.atomic():
            _enqueue("bulk_job_execute_task", job.pk)
        requeued.append(job.pk)
    for job in BulkJob.objects.filter(
        state__in=(JobState.VALIDATING, JobState.QUEUED), heartbeat_at__lt=stale
    ):
        _heartbeat(job.pk)
        with transaction.atomic():
            _enqueue("bulk_job_prepare_task", job.pk)
        requeued.append(job.pk)
    for job in BulkJob.objects.filter(
        state=JobState.QUEUED, heartbeat_at__isnull=True, created_at__lt=stale
    ):
        _heartbeat(job.pk)
        with transaction.atomic():
            _enqueue("bulk_job_prepare_task", job.pk)
        requeued.append(job.pk)
    for job in BulkJob.objects.filter(state=JobState.CANCELLING, heartbeat_at__lt=stale):
        job_cancel_finish(job.pk)
    for job_id in BulkJob.objects.filter(
        state=JobState.PAUSED,
        pause_reason__in=(PauseReason.NEEDS_SIGNIN, PauseReason.SERVICE_UNAVAILABLE),
    ).values_list("id", flat=True):
        if job_resume(job_id):
            requeued.append(job_id)
    return requeued


def source_open(job: BulkJob) -> IO[bytes]:
    return Path(job.source_path).open("rb")


def result_file_move(job: BulkJob, tmp: Path) -> Path:
    final = bulk_dir() / f"export-{job.pk}-{uuid.uuid4().hex[:8]}.csv"
    shutil.move(str(tmp), final)
    os.chmod(final, 0o600)
    return final


__all__ = [
    "DpsError",
    "job_cancel",
    "job_confirm",
    "job_create",
    "job_execute",
    "job_prepare",
    "job_resume",
    "jobs_resume_for_user",
    "jobs_sweep",
]
