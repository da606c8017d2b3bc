"""A DPS count limit (403 ``403002``) is shown as the instance's limit, never as a missing role.

These tests run their own emulators with small count limits (``dps-limits.json`` in the state
directory, read at start), so filling an instance takes a few records and the session's shared
emulators keep their real limits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn.capabilities import _cache_key
from enrollments.bulk import jobs, workflow
from enrollments.dps.exceptions import error_for_status
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowStatus
from instances.models import DpsInstance
from tests.integration.enrollments.test_bulk_runner_throttle import (  # noqa: F401 - fixture
    RefusingClient,
    _run_once,
    job,
)

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
LIMIT = 3
BASE = f"/dps/{INSTANCE}"


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Emulators whose DPS instances hold at most LIMIT enrollments and groups per type."""
    from emulators.common.server import EmulatorStack

    state = tmp_path_factory.mktemp("emulators-limits")
    (state / "dps-controls.json").write_text('{"quota": {"enabled": false}}')
    (state / "dps-limits.json").write_text(
        json.dumps({"max_enrollments": LIMIT, "max_groups_per_attestation": LIMIT})
    )
    stack = EmulatorStack(state).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def endpoints(emulators: Any) -> dict[str, Any]:
    return dict(emulators.endpoints())


@pytest.fixture(autouse=True)
def _empty_instance(endpoints: dict[str, Any]) -> None:
    """Start each test from an empty instance (the emulators are this module's own)."""
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    requests.post(
        f"https://{entry['host']}/_emulator/reset", verify=endpoints["ca_cert"], timeout=10
    ).raise_for_status()


def _fill(seed: Any, group: bool) -> None:
    for _ in range(LIMIT):
        seed.group() if group else seed.enrollment()


@pytest.mark.parametrize(
    ("kind", "form", "noun"),
    [
        (
            "enrollments",
            {"registration_id": "over-the-limit", "attestation_type": "symmetricKey"},
            "individual enrollments",
        ),
        (
            "groups",
            {"enrollment_group_id": "over-the-limit", "attestation_type": "symmetricKey"},
            "enrollment groups",
        ),
    ],
    ids=["enrollment", "group"],
)
def test_create_over_the_limit_says_the_instance_is_full(
    signed_in: Any, seed: Any, kind: str, form: dict[str, str], noun: str
) -> None:
    """The form comes back with DPS's limit in words; no role hint, permissions kept."""
    _fill(seed, group=kind == "groups")
    dana = signed_in("dana")
    page = dana.get(f"{BASE}/{kind}/new/")
    assert page.status_code == 200  # the capabilities are cached now
    user = page.wsgi_request.user
    instance = DpsInstance.objects.get(name=INSTANCE)
    assert cache.get(_cache_key(user, instance)) is not None
    response = dana.post(
        f"{BASE}/{kind}/new/", {**form, "key_mode": "generate", "provisioning_status": "enabled"}
    )
    assert response.status_code == 409, response.content[:800]
    errors = response.context["form"].non_field_errors()
    assert len(errors) == 1
    text = errors[0]
    assert "reached a count limit" in text
    assert f"The limit of {LIMIT} {noun}" in text  # DPS's own sentence, with the number
    html = response.content.decode()
    assert "role" not in text.lower()
    assert "not allowed" not in html.lower()
    assert 'value="over-the-limit"' in html  # the user's input is kept
    assert cache.get(_cache_key(user, instance)) is not None
    action = (
        AuditAction.ENROLLMENT_CREATE
        if kind == "enrollments"
        else AuditAction.ENROLLMENTGROUP_CREATE
    )
    event = AuditEvent.objects.get(action=action)
    assert event.outcome == AuditOutcome.FAILED
    assert (event.dps_status, event.dps_error_code) == (403, "403002")


@pytest.fixture
def bulk_env(endpoints: dict[str, Any], settings: Any, tmp_path: Path, monkeypatch: Any) -> Any:
    """Bulk jobs in-process against this module's emulator, reached with the owner's SAS."""
    dps = {d["name"]: d["connection_string"] for d in endpoints["dps"]}
    dps["_ca"] = endpoints["ca_cert"]
    monkeypatch.setenv("BULK_TEST_DPS", json.dumps(dps))
    monkeypatch.delenv("BULK_TEST_CAPS", raising=False)
    monkeypatch.delenv("BULK_TEST_REAUTH_FLAG", raising=False)
    settings.BULK_ACCESS_BACKEND = "tests.integration.enrollments.bulk_support.EmulatorAccess"
    settings.BULK_DIR = tmp_path / "bulk"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    instance = DpsInstance.objects.create(
        name=INSTANCE, host=entry["host"], resource_id=entry["resource_id"]
    )
    return get_user_model().objects.create_user("op@example.com"), instance


def test_bulk_rows_over_the_limit_fail_with_the_limit_in_words(bulk_env: Any) -> None:
    """Rows past the limit fail one by one with DPS's limit; the job finishes, no permission stop."""
    user, instance = bulk_env
    p = f"q{uuid.uuid4().hex[:6]}"
    header = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus"
    lines = [f"create,{p}-{i},symmetricKey,,enabled" for i in range(LIMIT + 2)]
    upload = SimpleUploadedFile("in.csv", ("\r\n".join([header, *lines]) + "\r\n").encode())
    caps = ["enrollments.read", "enrollments.write"]
    imported = jobs.job_create(
        owner=user,
        instance=instance,
        kind=JobKind.IMPORT,
        capabilities=caps,
        options={"default_operation": "upsert"},
        upload=upload,
        source_name="in.csv",
    )
    workflow.job_prepare(imported.pk)
    imported.refresh_from_db()
    assert imported.state == JobState.AWAITING_CONFIRMATION, imported.error
    jobs.job_confirm(job=imported, actor=user, capabilities=caps)
    workflow.job_execute(imported.pk)
    imported.refresh_from_db()
    assert imported.state == JobState.COMPLETED_WITH_ERRORS, imported.error
    assert (imported.count_done, imported.count_failed) == (LIMIT, 2)
    failed = list(BulkRow.objects.filter(job=imported, status=RowStatus.FAILED))
    assert len(failed) == 2
    for row in failed:
        assert row.error_code == "403002"
        assert "reached a count limit" in row.message, row.message
        assert f"The limit of {LIMIT} individual enrollments" in row.message


def test_bulk_call_refused_whole_for_a_limit_fails_its_rows_not_the_job(
    job: BulkJob,  # noqa: F811 - the fixture imported above
) -> None:
    """Were DPS to refuse a whole bulk call with 403002, the rows fail with the limit in words;
    the run is not stopped as for a missing role (which re-raises DpsForbidden)."""
    body = json.dumps({"errorCode": 403002, "message": "The limit of 3 individual enrollments"})
    client = RefusingClient(error_for_status(403, body=body))
    _run_once(job, client)  # a DpsForbidden would propagate out of run_chunk
    rows = BulkRow.objects.filter(job=job)
    assert set(rows.values_list("status", flat=True)) == {RowStatus.FAILED}
    assert set(rows.values_list("error_code", flat=True)) == {"403002"}
    assert all("reached a count limit" in m for m in rows.values_list("message", flat=True))
