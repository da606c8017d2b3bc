"""Celery tasks of bulk jobs: ids only, idempotent, acknowledged late.

The logic lives in :mod:`enrollments.bulk.workflow`; a task only passes the job's id. Tokens
never travel in messages: the worker asks the token broker for the job owner's token. The beat
schedule of the periodic ones is ``CELERY_BEAT_SCHEDULE`` in portal/settings.py.
"""

from __future__ import annotations

from celery import shared_task

_OPTS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="enrollments.bulk_job_prepare", **_OPTS)
def bulk_job_prepare_task(job_id: int) -> None:
    """Validate and preview an import, list a group's registrations, or start an export."""
    from enrollments.bulk.workflow import job_prepare

    job_prepare(job_id)


@shared_task(name="enrollments.bulk_job_execute", **_OPTS)
def bulk_job_execute_task(job_id: int) -> None:
    """Apply a confirmed job's rows (or write the export)."""
    from enrollments.bulk.workflow import job_execute

    job_execute(job_id)


@shared_task(name="enrollments.bulk_jobs_sweep", ignore_result=True)
def bulk_jobs_sweep_task() -> list[int]:
    """Re-queue jobs whose worker died and resume jobs whose owner signed in again."""
    from enrollments.bulk.workflow import jobs_sweep

    return jobs_sweep()


@shared_task(name="enrollments.bulk_files_expire", ignore_result=True)
def bulk_files_expire_task() -> list[int]:
    """Delete export files older than BULK_FILE_RETENTION_HOURS; clear keys left in rows."""
    from enrollments.bulk.retention import files_expire

    return files_expire()
