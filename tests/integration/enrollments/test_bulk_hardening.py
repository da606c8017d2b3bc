"""Bulk hardening (issue 11) against the DPS emulator, task bodies called in-process."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from enrollments.bulk import services
from enrollments.models import BulkRow, JobKind, JobState, RowStatus

from .test_bulk_jobs import KEY, _csv, _exists, bulk_env  # noqa: F401 - bulk_env is a fixture

pytestmark = pytest.mark.django_db
ALL = ["enrollments.read", "enrollments.write", "enrollments.delete", "attestation.reveal"]


def _previewed_import(env: dict[str, Any], lines: list[str]) -> Any:
    job = services.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=ALL,
        options={"default_operation": "upsert"},
        upload=_csv(lines),
        source_name="in.csv",
    )
    services.job_prepare(job.pk)
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
    seeded = services.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=ALL,
        options={},
        upload=_csv([f"create,{p}-old,symmetricKey,{KEY},enabled,{{}}"]),
        source_name="seed.csv",
    )
    services.job_prepare(seeded.pk)
    seeded.refresh_from_db()
    services.job_confirm(job=seeded, actor=env["user"], capabilities=ALL)
    services.job_execute(seeded.pk)
    assert _exists(client, f"{p}-old")

    job = _previewed_import(
        env, [f"delete,{p}-old,,,,", f"create,{p}-new,symmetricKey,{KEY},enabled,{{}}"]
    )
    assert job.count_delete == 1
    with pytest.raises(services.PermissionDenied, match="deletes 1 enrollment"):
        services.job_confirm(
            job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
        )
    services.job_confirm(job=job, actor=env["user"], capabilities=ALL)
    monkeypatch.setenv("BULK_TEST_CAPS", "enrollments.read,enrollments.write")
    services.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS, job.error
    assert (job.count_done, job.count_failed) == (1, 1)
    row = BulkRow.objects.get(job=job, registration_id=f"{p}-old")
    assert (row.status, row.error_code) == (RowStatus.FAILED, "403")
    assert "enrollments.delete" in row.message
    assert _exists(client, f"{p}-old")
    assert _exists(client, f"{p}-new")
