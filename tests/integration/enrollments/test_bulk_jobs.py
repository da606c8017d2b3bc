"""Bulk jobs end to end against the DPS emulator, task bodies called in-process.

Each test uses ids with its own random prefix, so tests share the session's emulator.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from enrollments.bulk import jobs, workflow
from enrollments.csv.reader import read_rows
from enrollments.dps.exceptions import DpsNotFound
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowPlan, RowStatus
from instances.models import DpsInstance
from tests.integration.enrollments.bulk_support import EmulatorAccess

pytestmark = pytest.mark.django_db

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
INSTANCE = "dps-fleet-prod"


@pytest.fixture
def bulk_env(endpoints, settings, tmp_path, monkeypatch):
    dps = {d["name"]: d["connection_string"] for d in endpoints["dps"]}
    dps["_ca"] = endpoints["ca_cert"]
    monkeypatch.setenv("BULK_TEST_DPS", json.dumps(dps))
    flag = tmp_path / "reauth"
    monkeypatch.setenv("BULK_TEST_REAUTH_FLAG", str(flag))
    monkeypatch.delenv("BULK_TEST_CAPS", raising=False)
    settings.BULK_ACCESS_BACKEND = "tests.integration.enrollments.bulk_support.EmulatorAccess"
    settings.BULK_DIR = tmp_path / "bulk"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    instance = DpsInstance.objects.create(
        name=INSTANCE, host=entry["host"], resource_id=entry["resource_id"]
    )
    user = get_user_model().objects.create_user("op@example.com")
    base = entry["host"]
    requests.put(
        f"https://{base}/_emulator/config",
        json={"quota": {"enabled": False}, "faults": {"rules": []}},
        verify=endpoints["ca_cert"],
        timeout=5,
    ).raise_for_status()
    client = EmulatorAccess().client(owner=user, instance=instance)
    yield {
        "user": user,
        "instance": instance,
        "client": client,
        "flag": flag,
        "base": base,
        "ca": endpoints["ca_cert"],
    }
    requests.put(
        f"https://{base}/_emulator/config",
        # Back to the session default (tests/conftest.py): no quota, no faults.
        json={"quota": {"enabled": False}, "faults": {"rules": []}},
        verify=endpoints["ca_cert"],
        timeout=5,
    )
    # Drop the rows imported here so later tests' list pages start from a small instance.
    requests.post(f"https://{base}/_emulator/reset", verify=endpoints["ca_cert"], timeout=30)


def _csv(
    lines: list[str],
    header: str = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags",
) -> SimpleUploadedFile:
    return SimpleUploadedFile("in.csv", ("\r\n".join([header, *lines]) + "\r\n").encode())


def _import(env, upload, *, confirm=True, default_operation="upsert") -> BulkJob:
    job = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=["enrollments.read", "enrollments.write", "attestation.reveal"],
        options={"default_operation": default_operation},
        upload=upload,
        source_name="in.csv",
    )
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    if confirm and job.state == JobState.AWAITING_CONFIRMATION:
        jobs.job_confirm(
            job=job,
            actor=env["user"],
            # Files with delete rows need the delete capability too (issue 11).
            capabilities=["enrollments.read", "enrollments.write", "enrollments.delete"],
        )
        workflow.job_execute(job.pk)
        job.refresh_from_db()
    return job


def _exists(client, rid) -> bool:
    try:
        client.enrollment_get(rid)
    except DpsNotFound:
        return False
    return True


def test_import_every_mode_with_preview_diff(bulk_env):
    env, client = bulk_env, bulk_env["client"]
    p = f"t{uuid.uuid4().hex[:6]}"
    n = 1200
    first = _import(
        env, _csv([f"create,{p}-{i},symmetricKey,{KEY},enabled,{{}}" for i in range(n)])
    )
    assert first.state == JobState.COMPLETED, first.error
    assert (first.count_create, first.count_done) == (n, n)
    assert not BulkRow.objects.filter(job=first).exclude(status=RowStatus.DONE).exists()
    assert first.source_path
    assert not Path(first.source_path).exists()

    lines = []
    for i in range(n):
        if i % 4 == 0:
            lines.append(f'update,{p}-{i},symmetricKey,{KEY},disabled,"{{""site"":{i}}}"')
        elif i % 4 == 1:
            lines.append(f"delete,{p}-{i},,,,")
        elif i % 4 == 2:
            lines.append(f"upsert,{p}-{i},symmetricKey,{KEY},enabled,{{}}")  # unchanged
        else:
            lines.append(f"create,{p}-new-{i},symmetricKey,,enabled,")
    lines.append(f"create,{p}-0,symmetricKey,,enabled,")  # duplicate of an update row
    lines.append("create,bad id,symmetricKey,,enabled,")
    job = _import(env, _csv(lines), confirm=False)
    assert job.state == JobState.AWAITING_CONFIRMATION
    assert job.count_update == n // 4 - 1
    assert job.count_delete == n // 4
    assert job.count_unchanged == n // 4
    assert job.count_create == n // 4
    assert job.count_invalid == 3
    row = BulkRow.objects.get(job=job, registration_id=f"{p}-4")
    assert json.loads(row.diff) == {
        "provisioningStatus": ["enabled", "disabled"],
        "twinTags": ["{}", '{"site":4}'],
    }
    dup = BulkRow.objects.filter(job=job, reg_key=f"{p}-0")
    assert {r.plan for r in dup} == {RowPlan.INVALID}
    assert "also on line" in dup[0].errors
    # Nothing was written before confirmation.
    assert client.enrollment_get(f"{p}-4").provisioning_status == "enabled"
    assert _exists(client, f"{p}-1")
    assert not _exists(client, f"{p}-new-3")

    jobs.job_confirm(
        job=job,
        actor=env["user"],
        capabilities=["enrollments.read", "enrollments.write", "enrollments.delete"],
    )
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS  # the invalid rows
    assert job.count_done == job.progress_total == n // 4 * 3 - 1
    assert client.enrollment_get(f"{p}-4").provisioning_status == "disabled"
    assert client.enrollment_get(f"{p}-4").initial_twin.tags == {"site": 4}
    assert not _exists(client, f"{p}-1")
    assert _exists(client, f"{p}-new-3")
    # Blank keys on an update keep the keys DPS holds.
    mech = client.enrollment_attestation_mechanism(f"{p}-new-3")
    assert mech.symmetric_key.primary_key
    actions = set(
        AuditEvent.objects.filter(target_type="bulk_job", target_id=str(job.pk)).values_list(
            "action", flat=True
        )
    )
    assert {"job_create", "job_start", "job_finish"} <= actions


def test_update_changed_since_preview_is_a_conflict_not_an_overwrite(bulk_env):
    env, client = bulk_env, bulk_env["client"]
    p = f"c{uuid.uuid4().hex[:6]}"
    _import(env, _csv([f"create,{p}-a,symmetricKey,{KEY},enabled,"]))
    job = _import(env, _csv([f"update,{p}-a,symmetricKey,{KEY},disabled,"]), confirm=False)
    assert job.count_update == 1
    current = client.enrollment_get(f"{p}-a")
    current.initial_twin = None
    current.extra["deviceId"] = "someone-else"
    client.enrollment_put(current, if_match=current.etag)
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.count_conflict == 1
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    assert client.enrollment_get(f"{p}-a").provisioning_status == "enabled"


@pytest.mark.slow
def test_injected_faults_still_finish_exactly(bulk_env):
    env, client = bulk_env, bulk_env["client"]
    p = f"f{uuid.uuid4().hex[:6]}"
    requests.put(
        f"https://{env['base']}/_emulator/config",
        json={
            "faults": {
                "seed": 7,
                "rules": [
                    {"kind": "503", "probability": 0.15, "retry_after": 0},
                    {"kind": "500", "probability": 0.1},
                    {"kind": "timeout", "probability": 0.05, "seconds": 4},
                ],
            }
        },
        verify=env["ca"],
        timeout=5,
    ).raise_for_status()
    job = _import(env, _csv([f"create,{p}-{i},symmetricKey,{KEY},enabled," for i in range(300)]))
    requests.put(
        f"https://{env['base']}/_emulator/config",
        json={"faults": {"rules": []}},
        verify=env["ca"],
        timeout=5,
    ).raise_for_status()
    assert job.state == JobState.COMPLETED, job.error
    assert job.count_done == 300
    assert job.count_failed == job.count_conflict == 0
    assert all(_exists(client, f"{p}-{i}") for i in range(0, 300, 37))


@pytest.mark.slow
def test_quota_429_is_retried_without_failures(bulk_env, settings):
    """A quota far below the portal's belief: DPS's 429s are waited out, no row fails.

    The quota is switched on after the preview, so only the run's six bulk calls meet it
    (three pass, three wait for the emulator's minute to move on).
    """
    env = bulk_env
    p = f"q{uuid.uuid4().hex[:6]}"
    job = _import(
        env, _csv([f"create,{p}-{i},symmetricKey,,enabled," for i in range(60)]), confirm=False
    )
    requests.put(
        f"https://{env['base']}/_emulator/config",
        json={"quota": {"enabled": True, "operations_per_minute": 3}},
        verify=env["ca"],
        timeout=5,
    ).raise_for_status()
    requests.post(
        f"https://{env['base']}/_emulator/reset", json={"quota": True}, verify=env["ca"], timeout=5
    )
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 600}
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert job.count_done == 60
    assert job.count_failed == 0


def test_cancel_skips_what_was_not_applied(bulk_env):
    env = bulk_env
    p = f"x{uuid.uuid4().hex[:6]}"
    job = _import(
        env, _csv([f"create,{p}-{i},symmetricKey,,enabled," for i in range(50)]), confirm=False
    )
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    jobs.job_cancel(job=job, actor=env["user"])
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.count_skipped == 50
    assert not _exists(env["client"], f"{p}-0")
    waiting = _import(env, _csv([f"create,{p}-w,symmetricKey,,enabled,"]), confirm=False)
    jobs.job_cancel(job=waiting, actor=env["user"])
    waiting.refresh_from_db()
    assert waiting.state == JobState.CANCELLED


def test_expired_signin_pauses_and_resumes(bulk_env):
    env = bulk_env
    p = f"s{uuid.uuid4().hex[:6]}"
    job = _import(
        env, _csv([f"create,{p}-{i},symmetricKey,,enabled," for i in range(30)]), confirm=False
    )
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    env["flag"].write_text("expired")
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.PAUSED, "needs_signin")
    assert job.state_label == "Paused: needs sign-in"
    assert jobs.jobs_resume_for_user(env["user"]) == 0  # still expired
    env["flag"].unlink()
    assert workflow.job_resume(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert job.count_done == 30


def test_missing_capability_refused_at_queue_and_run_time(bulk_env, monkeypatch):
    env = bulk_env
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied, match=r"enrollments\.write"):
        jobs.job_create(
            owner=env["user"],
            instance=env["instance"],
            kind=JobKind.IMPORT,
            capabilities=["enrollments.read"],
            upload=_csv(["create,a,tpm,,,"]),
        )
    assert AuditEvent.objects.filter(action="denied", dps_instance=INSTANCE).exists()
    job = _import(env, _csv(["create,zz-cap,symmetricKey,,enabled,"]), confirm=False)
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    monkeypatch.setenv("BULK_TEST_CAPS", "enrollments.read")
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert "enrollments.write" in job.error
    assert not _exists(env["client"], "zz-cap")


def test_bad_file_fails_the_job_with_a_clear_error(bulk_env):
    job = _import(
        bulk_env, SimpleUploadedFile("x.csv", b"\x00\x01\x02garbage" * 100), confirm=False
    )
    assert job.state == JobState.FAILED
    assert "binary" in job.error


def test_export_round_trips_to_all_unchanged_and_delete_selected(bulk_env):
    env, client = bulk_env, bulk_env["client"]
    p = f"e{uuid.uuid4().hex[:6]}"
    _import(
        env,
        _csv([f'create,{p}-{i},symmetricKey,{KEY},enabled,"{{""a"":""=x""}}"' for i in range(25)]),
    )
    export = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.EXPORT,
        capabilities=["enrollments.read", "attestation.reveal"],
        options={"include_keys": True},
    )
    workflow.job_prepare(export.pk)
    workflow.job_execute(export.pk)
    export.refresh_from_db()
    assert export.state == JobState.COMPLETED, export.error
    data = Path(export.result_path).read_bytes()
    mine = [r for r in read_rows(io.BytesIO(data)) if r.registration_id.startswith(p)]
    assert len(mine) == 25
    assert mine[0].payload["attestation"]["symmetricKey"]["primaryKey"] == KEY
    assert AuditEvent.objects.filter(action="export", message="export with keys").exists()
    # Re-import of the file: every row of this test is unchanged.
    job = _import(env, SimpleUploadedFile("export.csv", data), confirm=False)
    ours = BulkRow.objects.filter(job=job, reg_key__startswith=p)
    assert {r.plan for r in ours} == {RowPlan.UNCHANGED}

    delete = jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.DELETE_SELECTED,
        capabilities=["enrollments.delete"],
        options={"registration_ids": [f"{p}-{i}" for i in range(25)]},
    )
    workflow.job_prepare(delete.pk)
    workflow.job_execute(delete.pk)
    delete.refresh_from_db()
    assert delete.state == JobState.COMPLETED
    assert delete.count_done == 25
    assert not _exists(client, f"{p}-3")
