"""A bulk job's life: the states it moves through and the task bodies that move it.

Every change of ``BulkJob.state`` goes through :func:`transition`, which allows only the moves
of :data:`TRANSITIONS` and applies one with a conditional UPDATE (``WHERE state IN (...)``), so
of two workers (or a worker and a cancelling user) racing for a job, one wins and the other
learns it lost. The task bodies (:func:`job_prepare`, :func:`job_execute`, :func:`jobs_sweep`)
take ids only and are safe to run twice: the row leases and the job's state decide what is left
to do. Transitions that matter are audited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from authn.exceptions import PermissionLookupFailed, ReauthRequired, TokenUnavailable
from enrollments.bulk.access import access
from enrollments.bulk.audit_trail import job_audit
from enrollments.bulk.export import export_run
from enrollments.bulk.ingest import ingest_file
from enrollments.bulk.permissions import (
    DELETE_CAPABILITY,
    REVEAL_CAPABILITY,
    job_record_kind,
    kind_require,
)
from enrollments.bulk.preview import plan_counts_store, preview_job, registrations_list
from enrollments.bulk.retention import job_inputs_discard
from enrollments.bulk.runner import fail_pending_deletes, rows_in_flight, run_rows
from enrollments.bulk.selection import selection_from_query, selection_pending
from enrollments.csv.reader import CsvFormatError
from enrollments.csv.references import references_check
from enrollments.dps.exceptions import DpsForbidden, DpsUnauthorized
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

S = JobState
#: Every move a job may make, from each state. Final states have none.
TRANSITIONS: dict[str, frozenset[str]] = {
    # A job waits for a worker to validate it (or to start an export at once).
    S.QUEUED: frozenset({S.VALIDATING, S.CANCELLING}),
    # VALIDATING to itself: a worker restarts a validation whose first worker died.
    S.VALIDATING: frozenset(
        {S.VALIDATING, S.AWAITING_CONFIRMATION, S.RUNNING, S.PAUSED, S.FAILED, S.CANCELLING}
    ),
    S.AWAITING_CONFIRMATION: frozenset({S.RUNNING, S.CANCELLING}),
    S.RUNNING: frozenset({S.PAUSED, S.FAILED, S.COMPLETED, S.COMPLETED_WITH_ERRORS, S.CANCELLING}),
    # Resumed where it stopped: the phase in ``options`` says which.
    S.PAUSED: frozenset({S.VALIDATING, S.RUNNING, S.CANCELLING}),
    # A step that fails while being cancelled ends failed, as it would have anyway.
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED}),
    S.CANCELLED: frozenset(),
    S.COMPLETED: frozenset(),
    S.COMPLETED_WITH_ERRORS: frozenset(),
    S.FAILED: frozenset(),
}

#: The kinds that act on a chosen selection and run without a preview.
_NO_PREVIEW = (JobKind.EXPORT, JobKind.DELETE_SELECTED, JobKind.SET_STATUS)

#: The task names :func:`enqueue` takes (attributes of enrollments.tasks).
PREPARE = "bulk_job_prepare_task"
EXECUTE = "bulk_job_execute_task"

#: What pauses a job rather than failing it: the owner must sign in again, or Azure is away.
_PAUSES = (ReauthRequired, TokenUnavailable, PermissionLookupFailed)


class InvalidTransition(ValueError):
    """A move :data:`TRANSITIONS` does not allow: a programming error, never a race."""


def transition(job_id: int, from_states: Iterable[str], to_state: str, **fields: Any) -> bool:
    """Move the job from any of ``from_states`` to ``to_state``, setting ``fields`` too.

    Return False if the job was in none of ``from_states`` (someone else moved it first).
    Raise :class:`InvalidTransition` if a move asked for is not in :data:`TRANSITIONS`.
    """
    sources = list(from_states)
    refused = [s for s in sources if to_state not in TRANSITIONS[s]]
    if refused:
        raise InvalidTransition(f"A job cannot go from {', '.join(refused)} to {to_state}.")
    moved = BulkJob.objects.filter(pk=job_id, state__in=sources).update(
        state=to_state, heartbeat_at=timezone.now(), **fields
    )
    return bool(moved)


def enqueue(task_name: str, job_id: int) -> None:
    """Queue the task ``task_name`` for the job once the current transaction commits."""
    from enrollments import tasks  # tasks import this module: resolved at call time

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(job_id))


def job_counts(job: BulkJob) -> dict[str, int]:
    """Return the job's plan and outcome counters, as the audit log records them."""
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


def _job(job_id: int) -> BulkJob:
    return BulkJob.objects.select_related("owner", "instance").get(pk=job_id)


def _stop_requested(job_id: int) -> bool:
    return BulkJob.objects.filter(pk=job_id, state=JobState.CANCELLING).exists()


def _heartbeat(job_id: int) -> None:
    BulkJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())


#
# Preparing
#


def job_prepare(job_id: int) -> None:
    """Validate and preview an import (or list a group's registrations); then await confirmation.

    Export, "delete selected" and a status change need no preview and go straight to running.
    """
    if not transition(
        job_id,
        (JobState.QUEUED, JobState.VALIDATING, JobState.PAUSED),
        JobState.VALIDATING,
        started_at=timezone.now(),
        pause_reason="",
    ):
        return
    job = _job(job_id)
    if job.kind in _NO_PREVIEW:
        _prepare_selection(job)
        return
    try:
        _prepare_rows(job)
    except _PAUSES as exc:
        _pause(job, exc, "prepare")
        return
    except (CsvFormatError, PermissionDenied, DpsForbidden, DpsUnauthorized) as exc:
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
    transition(job_id, (JobState.VALIDATING,), JobState.AWAITING_CONFIRMATION)


def _prepare_selection(job: BulkJob) -> None:
    """Store the rows of a "select all N matching" job from its query, then start running it."""
    if selection_pending(job):
        try:
            selection_from_query(job)
        except ValidationError as exc:
            _fail(job, " ".join(exc.messages))
            return
        except DatabaseError as exc:
            _fail_database_error(job, exc)
            return
    _start_running(job)


def _prepare_rows(job: BulkJob) -> None:
    """Store and plan the job's rows, as the owner; stop early once a cancel is asked for."""
    caps = access().capabilities(owner=job.owner, instance=job.instance)
    kind_require(job.kind, caps, record_kind=job_record_kind(job))
    client = access().client(owner=job.owner, instance=job.instance)
    bucket = bucket_for(job.instance.name)
    if job.kind != JobKind.IMPORT:
        registrations_list(job, client, bucket)
        return

    def should_stop() -> bool:
        return _stop_requested(job.pk)

    if job.options.get("phase") != "preview":
        ingest_file(
            job,
            Path(job.source_path),
            max_rows=settings.BULK_MAX_ROWS,
            default_operation=job.options.get("default_operation", "upsert"),
            should_stop=should_stop,
        )
        job.options = {**job.options, "phase": "preview"}
        job.save(update_fields=["options"])
    if should_stop():
        return
    references_check(job)  # linked hubs and verified CAs, read as the owner
    preview_job(
        job,
        client,
        bucket,
        can_reveal=REVEAL_CAPABILITY in caps,
        should_stop=should_stop,
        heartbeat=lambda: _heartbeat(job.pk),
    )


def _start_running(job: BulkJob) -> None:
    """Run a job that needs no preview (an export, a deletion or status change of a selection)."""
    options = {**job.options, "phase": "run"}
    started = timezone.now()
    if not transition(
        job.pk, (JobState.VALIDATING,), JobState.RUNNING, run_started_at=started, options=options
    ):
        job_cancel_finish(job.pk)  # cancelled meanwhile
        return
    job.state, job.run_started_at, job.options = JobState.RUNNING, started, options
    if job.kind in (JobKind.DELETE_SELECTED, JobKind.SET_STATUS):
        plan_counts_store(job)
    job_audit(job, AuditAction.JOB_START, after=job_counts(job))
    enqueue(EXECUTE, job.pk)


def _pause(job: BulkJob, exc: Exception, phase: str) -> None:
    """Pause the job in ``phase`` ("prepare" or "run") until the sweep can resume it.

    A job cancelled meanwhile is closed as cancelled instead.
    """
    reason = (
        PauseReason.NEEDS_SIGNIN
        if isinstance(exc, ReauthRequired)
        else PauseReason.SERVICE_UNAVAILABLE
    )
    job.refresh_from_db()
    busy = JobState.RUNNING if phase == "run" else JobState.VALIDATING
    options = {**job.options, "phase": phase}
    if not transition(job.pk, (busy,), JobState.PAUSED, pause_reason=reason, options=options):
        job_cancel_finish(job.pk)
        return
    job.state, job.pause_reason, job.options = JobState.PAUSED, reason, options
    if reason == PauseReason.SERVICE_UNAVAILABLE:
        # An outage, not a refusal or an expired sign-in: nothing for the audit trail to
        # hold against the owner. The sweep resumes the job once Azure answers.
        log.warning("bulk job %s paused: Entra ID or ARM could not be reached", job.pk)
        return
    job_audit(job, AuditAction.REAUTH, AuditOutcome.FAILED, message=f"job paused: {reason}")


def _fail(job: BulkJob, message: str) -> None:
    """End the job as failed with ``message`` (unless it has ended already)."""
    finished = timezone.now()
    if not transition(
        job.pk,
        (JobState.VALIDATING, JobState.RUNNING, JobState.CANCELLING),
        JobState.FAILED,
        error=message[:4000],
        finished_at=finished,
    ):
        return
    job.state, job.error, job.finished_at = JobState.FAILED, message[:4000], finished
    job_audit(job, AuditAction.JOB_FINISH, AuditOutcome.FAILED, message=message[:500])
    job_inputs_discard(job)


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


#
# Running
#


def job_execute(job_id: int) -> None:
    """Apply the job's rows (or write the export); safe to run twice or concurrently."""
    job = _job(job_id)
    if job.state == JobState.CANCELLING:
        job_cancel_finish(job_id)
        return
    if job.state != JobState.RUNNING:
        return
    _heartbeat(job_id)
    try:
        finished = _apply(job)
    except _PAUSES as exc:
        # The lanes gave their rows back (unsent ones pending, sent ones in doubt).
        _pause(job, exc, "run")
        return
    except (PermissionDenied, DpsForbidden, DpsUnauthorized) as exc:
        _abort_rows(job, str(exc))
        _fail(job, str(exc))
        return
    if not finished:
        job_cancel_finish(job_id)
        return
    if job.kind != JobKind.EXPORT and rows_in_flight(job):
        return  # another worker finishes the last chunk and the job
    job_finish(job_id)


def _apply(job: BulkJob) -> bool:
    """Apply the rows (or write the export) as the owner; False if a cancel stopped it."""
    caps = access().capabilities(owner=job.owner, instance=job.instance)
    kind_require(
        job.kind,
        caps,
        include_keys=bool(job.options.get("include_keys")),
        record_kind=job_record_kind(job),
    )
    if job.kind == JobKind.IMPORT and DELETE_CAPABILITY not in caps:
        _refuse_deletes(job)
    client = access().client(owner=job.owner, instance=job.instance)
    bucket = bucket_for(job.instance.name)

    def should_stop() -> bool:
        return _stop_requested(job.pk)

    if job.kind == JobKind.EXPORT:
        export_run(
            job,
            client,
            bucket,
            can_reveal=REVEAL_CAPABILITY in caps,
            should_stop=should_stop,
            heartbeat=lambda: _heartbeat(job.pk),
        )
        return not should_stop()
    return run_rows(
        job,
        client,
        bucket,
        should_stop=should_stop,
        lanes=int(getattr(settings, "BULK_CALLS_IN_FLIGHT", 1)),
        make_client=lambda: access().client(owner=job.owner, instance=job.instance),
        caps=caps,
    )


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
        job_audit(job, AuditAction.DENIED, AuditOutcome.DENIED, message=message)
        job.refresh_from_db()


def _abort_rows(job: BulkJob, message: str) -> None:
    n = BulkRow.objects.filter(
        job=job,
        status__in=(RowStatus.PENDING,),
        plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE),
    ).update(status=RowStatus.SKIPPED, message=message[:2000])
    BulkJob.objects.filter(pk=job.pk).update(count_skipped=F("count_skipped") + n)


#
# Ending
#


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
        state = JobState.COMPLETED_WITH_ERRORS if errors else JobState.COMPLETED
        finished = timezone.now()
        if not transition(job_id, (JobState.RUNNING,), state, finished_at=finished):
            return
        job.state, job.finished_at = state, finished
        job_audit(job, AuditAction.JOB_FINISH, after={**job_counts(job), "state": job.state})
    job_inputs_discard(job)


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
        finished = timezone.now()
        if not transition(
            job_id,
            (JobState.CANCELLING,),
            JobState.CANCELLED,
            finished_at=finished,
            count_skipped=F("count_skipped") + n,
        ):
            return
        job.state, job.finished_at = JobState.CANCELLED, finished
        job.count_skipped += n
        job_audit(job, AuditAction.JOB_FINISH, after={**job_counts(job), "state": job.state})
    job_inputs_discard(job)


#
# Resuming and sweeping
#


def job_resume(job_id: int) -> bool:
    """Resume a job paused for sign-in or an outage once the owner's tokens (and rights) answer."""
    job = _job(job_id)
    if job.state != JobState.PAUSED:
        return False
    try:
        access().check_signin(owner=job.owner, instance=job.instance)
        if job.pause_reason == PauseReason.SERVICE_UNAVAILABLE:
            access().capabilities(owner=job.owner, instance=job.instance)
    except _PAUSES:
        return False
    running = job.options.get("phase") == "run"
    to_state = JobState.RUNNING if running else JobState.VALIDATING
    if not transition(job_id, (JobState.PAUSED,), to_state, pause_reason=""):
        return False
    job_audit(
        job,
        AuditAction.JOB_START,
        message="resumed after sign-in"
        if job.pause_reason == PauseReason.NEEDS_SIGNIN
        else "resumed: Azure answers again",
    )
    with transaction.atomic():
        enqueue(EXECUTE if running else PREPARE, job_id)
    return True


def jobs_sweep(*, stale_seconds: int | None = None) -> list[int]:
    """Re-queue jobs whose worker went silent, and resume jobs whose owner signed in again.

    A worker killed with SIGKILL leaves its message unacknowledged until the broker's
    visibility timeout; this sweep does not wait that long. Return the ids of the jobs queued.
    """
    stale = timezone.now() - timedelta(seconds=stale_seconds or settings.BULK_STALE_SECONDS)
    silent = BulkJob.objects.filter(heartbeat_at__lt=stale)
    never_started = BulkJob.objects.filter(
        state=JobState.QUEUED, heartbeat_at__isnull=True, created_at__lt=stale
    )
    requeued = [
        *_requeue(silent.filter(state=JobState.RUNNING), EXECUTE),
        *_requeue(silent.filter(state__in=(JobState.VALIDATING, JobState.QUEUED)), PREPARE),
        *_requeue(never_started, PREPARE),
    ]
    for job_id in silent.filter(state=JobState.CANCELLING).values_list("id", flat=True):
        job_cancel_finish(job_id)
    for job_id in BulkJob.objects.filter(
        state=JobState.PAUSED,
        pause_reason__in=(PauseReason.NEEDS_SIGNIN, PauseReason.SERVICE_UNAVAILABLE),
    ).values_list("id", flat=True):
        if job_resume(job_id):
            requeued.append(job_id)
    return requeued


def _requeue(jobs: QuerySet[BulkJob], task_name: str) -> list[int]:
    """Queue ``task_name`` again for each of ``jobs``; return their ids."""
    ids = list(jobs.values_list("id", flat=True))
    for job_id in ids:
        _heartbeat(job_id)
        with transaction.atomic():
            enqueue(task_name, job_id)
    return ids
