"""Bulk hardening (issue 11) against the DPS emulator, task bodies called in-process."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from enrollments import tasks
from enrollments.bulk import files, jobs, selectors, workflow
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowStatus
from portal.celery import app

from .test_bulk_jobs import KEY, _csv, _exists, bulk_env  # noqa: F401 - bulk_env is a fixture

pytestmark = pytest.mark.django_db
ALL = ["enrollments.read", "enrollments.write", "enrollments.delete", "attestation.reveal"]


def _previewed_import(env: dict[str, Any], lines: list[str]) -> Any:
    job = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=ALL,
        options={"default_operation": "upsert"},
        upload=_csv(lines),
        source_name="in.csv",
    )
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_CONFIRMATION, job.error
    return job


def test_delete_rows_fail_alone_when_the_capability_is_gone_at_run_time(
    bulk_env: dict[str, Any],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Delete lost between preview and run: the deletes fail with the reason, the rest apply."""
    env, client = bulk_env, bulk_env["client"]
    p = f"r{uuid.uuid4().hex[:6]}"
    seeded = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=ALL,
        options={},
        upload=_csv([f"create,{p}-old,symmetricKey,{KEY},enabled,{{}}"]),
        source_name="seed.csv",
    )
    workflow.job_prepare(seeded.pk)
    seeded.refresh_from_db()
    jobs.job_confirm(job=seeded, actor=env["user"], capabilities=ALL)
    workflow.job_execute(seeded.pk)
    assert _exists(client, f"{p}-old")

    job = _previewed_import(
        env, [f"delete,{p}-old,,,,", f"create,{p}-new,symmetricKey,{KEY},enabled,{{}}"]
    )
    assert job.count_delete == 1
    with pytest.raises(PermissionDenied, match="deletes 1 enrollment"):
        jobs.job_confirm(
            job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
        )
    jobs.job_confirm(job=job, actor=env["user"], capabilities=ALL)
    monkeypatch.setenv("BULK_TEST_CAPS", "enrollments.read,enrollments.write")
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS, job.error
    assert (job.count_done, job.count_failed) == (1, 1)
    row = BulkRow.objects.get(job=job, registration_id=f"{p}-old")
    assert (row.status, row.error_code) == (RowStatus.FAILED, "403")
    assert "enrollments.delete" in row.message
    assert _exists(client, f"{p}-old")
    assert _exists(client, f"{p}-new")


#
# Secrets: keys leave the rows when a job ends; result files are kept for a while only
#

KEY2 = "WllYV1ZVVFNSUVBPTk1MS0pJSEdGRURDQkF6eXh3dnU="
KEYS_HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,symmetricKeySecondary"


def _keyed_import(env: dict[str, Any], p: str, n: int = 3) -> Any:
    return jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=ALL,
        options={"default_operation": "upsert"},
        upload=_csv(
            [f"create,{p}-{i},symmetricKey,{KEY},{KEY2}" for i in range(n)], header=KEYS_HEADER
        ),
        source_name="keys.csv",
    )


def _key_rows(job: Any) -> int:
    rows = BulkRow.objects.filter(job=job)
    return sum(1 for r in rows if KEY in r.payload or KEY2 in r.payload)


def test_keys_are_cleared_from_rows_when_a_job_ends(
    bulk_env: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Completed, failed and cancelled jobs keep no key in their rows; the report still works."""
    env = bulk_env
    p = f"k{uuid.uuid4().hex[:6]}"
    done = _keyed_import(env, f"{p}a")
    workflow.job_prepare(done.pk)
    assert _key_rows(done) == 3  # the run needs them until then
    jobs.job_confirm(job=done, actor=env["user"], capabilities=ALL)
    workflow.job_execute(done.pk)
    done.refresh_from_db()
    assert done.state == JobState.COMPLETED, done.error
    assert _key_rows(done) == 0
    assert (
        env["client"]
        .enrollment_attestation_mechanism(f"{p}a-0")
        .to_json()["symmetricKey"]["primaryKey"]
        == KEY
    )
    report = "".join(selectors.job_report_lines(done))
    assert f"{p}a-2" in report
    assert KEY not in report

    cancelled = _keyed_import(env, f"{p}b")
    workflow.job_prepare(cancelled.pk)
    cancelled.refresh_from_db()
    jobs.job_cancel(job=cancelled, actor=env["user"])
    cancelled.refresh_from_db()
    assert cancelled.state == JobState.CANCELLED
    assert _key_rows(cancelled) == 0

    failed = _keyed_import(env, f"{p}c")
    workflow.job_prepare(failed.pk)
    failed.refresh_from_db()
    jobs.job_confirm(job=failed, actor=env["user"], capabilities=ALL)
    monkeypatch.setenv("BULK_TEST_CAPS", "enrollments.read")  # write lost: the job fails
    workflow.job_execute(failed.pk)
    failed.refresh_from_db()
    assert failed.state == JobState.FAILED
    assert _key_rows(failed) == 0


def _finished_export(env: dict[str, Any], *, include_keys: bool = False) -> Any:
    job = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.EXPORT,
        capabilities=ALL,
        options={"include_keys": include_keys},
    )
    workflow.job_prepare(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    return job


def test_result_files_are_deleted_after_the_retention_time(
    bulk_env: dict[str, Any],  # noqa: F811
    settings: Any,
) -> None:
    """The beat task deletes export files (and stray files) older than the retention time."""
    assert app.conf.beat_schedule["bulk-files-expire"]["task"] == "enrollments.bulk_files_expire"
    assert settings.BULK_FILE_RETENTION_HOURS == 24
    env = bulk_env
    old, fresh = _finished_export(env), _finished_export(env)
    old_path, fresh_path = Path(old.result_path), Path(fresh.result_path)
    assert old_path.exists()
    assert fresh_path.exists()

    BulkJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    stray = files.bulk_dir() / "export-999.partial"
    stray.write_text("x")
    past = (timezone.now() - timedelta(hours=25)).timestamp()
    os.utime(stray, (past, past))
    tasks.bulk_files_expire_task()
    assert not old_path.exists()
    assert fresh_path.exists()
    assert not stray.exists()
    old.refresh_from_db()
    assert (old.result_path, old.options.get("file_deleted")) == ("", "expired")
    assert AuditEvent.objects.filter(
        action=AuditAction.EXPORT, target_id=str(old.pk), message__contains="deleted 24 h"
    ).exists()
    settings.BULK_FILE_RETENTION_HOURS = 0
    tasks.bulk_files_expire_task()
    assert not fresh_path.exists()
