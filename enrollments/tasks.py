"""Celery tasks of bulk jobs: ids only, idempotent, acknowledged late.

The logic lives in :mod:`enrollments.bulk.services`; a task only loads the job by id. Tokens
never travel in messages: the worker asks the token broker for the job owner's token.
"""

from __future__ import annotations

from celery import shared_task

_OPTS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="enrollments.bulk_job_prepare", **_OPTS)
def bulk_job_prepare_task(job_id: int) -> None:
    """Validate and preview an import, list a group's registrations, or start an export."""
    from enrollments.bulk.services import job_prepare

    job_prepare(job_id)


@shared_task(name="enrollments.bulk_job_execute", **_OPTS)
def bulk_job_execute_task(job_id: int) -> None:
    """Apply a confirmed job's rows (or write the export)."""
    from enrollments.bulk.services import job_execute

    job_execute(job_id)


@shared_task(name="enrollments.bulk_jobs_sweep", ignore_result=True)
def bulk_jobs_sweep_task() -> list[int]:
    """Re-queue jobs whose worker died and resume jobs whose owner signed in again."""
    from enrollments.bulk.services import jobs_sweep

    return jobs_sweep()


@shared_task(name="enrollments.bulk_files_expire", ignore_result=True)
def bulk_files_expire_task() -> list[int]:
    """Delete export files older than BULK_FILE_RETENTION_HOURS; clear keys left in rows."""
    from enrollments.bulk.retention import files_expire

    return files_expire()


def _schedule() -> None:
    from portal.celery import app

    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "bulk-jobs-sweep": {"task": "enrollments.bulk_jobs_sweep", "schedule": 30.0},
        "bulk-files-expire": {"task": "enrollments.bulk_files_expire", "schedule": 900.0},
    }


_schedule()
