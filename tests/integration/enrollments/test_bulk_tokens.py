"""Bulk jobs and the token broker (issue 11): resume at sign-in, outages of Entra ID and ARM.

The job reaches DPS as its owner through the real token broker (PortalAccess) and the
emulators; task bodies are called directly, as in test_views_bulk.py.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AuditEvent, AuditOutcome
from authn import msal_app
from authn.msal_app import ARM_RESOURCE, DPS_RESOURCE
from authn.tokens import token_caches_load, token_caches_save, token_for_user, token_memo_forget
from enrollments.bulk import workflow
from enrollments.models import BulkJob, BulkRow, JobState, PauseReason, RowStatus
from tests.integration.authn.conftest import (  # noqa: F401 - fixtures used here
    EntraSignin,
    browser,
    entra_control,
)

from .conftest import INSTANCE, PERSONAS

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}/bulk"
KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags"


@pytest.fixture(autouse=True)
def _bulk_settings(settings: Any, tmp_path: Any) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signin(client: Client, endpoints: dict[str, Any], persona: str = "dana") -> None:
    browser_session = requests.Session()
    browser_session.trust_env = False
    browser_session.verify = endpoints["ca_cert"]
    creds = PERSONAS[persona]
    assert creds is not None
    assert EntraSignin(client, browser_session)(*creds).status_code == 302


def _confirmed_import(client: Client, prefix: str, n: int = 3) -> BulkJob:
    """Upload, preview and confirm an import of ``n`` new enrollments; return the running job."""
    lines = [f"create,{prefix}-{i},symmetricKey,{KEY},enabled," for i in range(n)]
    upload = SimpleUploadedFile("in.csv", ("\r\n".join([HEADER, *lines]) + "\r\n").encode())
    response = client.post(f"{BASE}/import/", {"file": upload, "default_operation": "upsert"})
    assert response.status_code == 302, response.content[:800]
    job = BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_CONFIRMATION, job.error
    assert client.post(f"{BASE}/jobs/{job.pk}/confirm/").status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    return job


def _authority_down(settings: Any) -> str:
    saved = str(settings.ENTRA_AUTHORITY)
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    msal_app.reset_http_cache()
    return saved


def _forget_dps_tokens(user: Any) -> None:
    """Drop the DPS access tokens the preview left in the owner's cache (ARM's stay)."""
    caches = token_caches_load(user)
    kind = caches.obo.CredentialType.ACCESS_TOKEN
    for entry in list(caches.obo.search(kind)):
        if DPS_RESOURCE in entry.get("target", ""):
            caches.obo.remove_at(entry)
    assert token_caches_save(user, caches) is not None
    token_memo_forget(user)


def test_owner_signing_in_again_resumes_the_paused_job_which_finishes(
    azure_settings: Any,
    dps_instances: Any,
    endpoints: dict[str, Any],
    entra_control: Any,  # noqa: F811
    owner_client: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Refresh token expired → job paused "needs sign-in"; the owner signs in → the job finishes."""
    entra_control.lifetimes(access_token=60)  # every DPS call needs the refresh token
    client = Client(SERVER_NAME="localhost")
    _signin(client, endpoints)
    prefix = f"rs{uuid.uuid4().hex[:6]}"
    job = _confirmed_import(client, prefix)
    assert entra_control.expire_refresh_tokens(PERSONAS["dana"][0]) >= 1  # type: ignore[index]

    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.PAUSED, PauseReason.NEEDS_SIGNIN)

    with django_capture_on_commit_callbacks() as queued:
        _signin(client, endpoints)  # through the emulator's sign-in page
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.RUNNING, "")
    assert len(queued) == 1  # the execute task
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert job.count_done == 3
    for i in range(3):
        assert owner_client.enrollment_get(f"{prefix}-{i}").registration_id == f"{prefix}-{i}"


def test_token_service_unreachable_mid_run_pauses_the_job_then_it_finishes(
    azure_settings: Any,
    dps_instances: Any,
    endpoints: dict[str, Any],
    owner_client: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """No DPS token to be had (Entra down): the job pauses, no row lost; it resumes later."""
    client = Client(SERVER_NAME="localhost")
    _signin(client, endpoints)
    prefix = f"tu{uuid.uuid4().hex[:6]}"
    job = _confirmed_import(client, prefix)
    token_for_user(job.owner, ARM_RESOURCE)  # ARM still answers; only the DPS token is missing
    _forget_dps_tokens(job.owner)
    saved = _authority_down(settings)

    workflow.job_execute(job.pk)  # the old code raised TokenUnavailable out of the task
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.PAUSED, PauseReason.SERVICE_UNAVAILABLE)
    assert not AuditEvent.objects.filter(outcome=AuditOutcome.DENIED).exists()
    rows = BulkRow.objects.filter(job=job)
    # Nothing decided, nothing held: rows a call may have carried are left in doubt, to be
    # checked against DPS before they are sent again.
    assert set(rows.values_list("status", flat=True)) <= {RowStatus.PENDING, RowStatus.SENDING}
    assert not rows.exclude(lease="").exists()
    assert workflow.jobs_sweep() == []  # still unreachable: stays paused
    job.refresh_from_db()
    assert job.state == JobState.PAUSED

    settings.ENTRA_AUTHORITY = saved
    msal_app.reset_http_cache()
    with django_capture_on_commit_callbacks() as queued:
        assert workflow.jobs_sweep() == [job.pk]
    assert len(queued) == 1
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert (job.count_done, job.count_failed, job.count_conflict) == (3, 0, 0)
    assert set(rows.values_list("status", flat=True)) == {RowStatus.DONE}
    for i in range(3):
        assert owner_client.enrollment_get(f"{prefix}-{i}").registration_id == f"{prefix}-{i}"


def test_arm_unreachable_pauses_the_job_instead_of_failing_it_as_denied(
    azure_settings: Any,
    dps_instances: Any,
    endpoints: dict[str, Any],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The owner's rights cannot be read: the job waits; it is neither failed nor "denied"."""
    client = Client(SERVER_NAME="localhost")
    _signin(client, endpoints)
    job = _confirmed_import(client, f"au{uuid.uuid4().hex[:6]}", n=2)
    saved = settings.ARM_ENDPOINT
    settings.ARM_ENDPOINT = f"https://127.0.0.1:{_closed_port()}"

    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.PAUSED, PauseReason.SERVICE_UNAVAILABLE)
    assert "does not allow" not in job.error
    assert not AuditEvent.objects.filter(outcome=AuditOutcome.DENIED).exists()

    settings.ARM_ENDPOINT = saved
    with django_capture_on_commit_callbacks():
        assert workflow.jobs_sweep() == [job.pk]
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error


def test_purge_keeps_the_token_cache_of_a_working_jobs_owner(
    azure_settings: Any, dps_instances: Any, endpoints: dict[str, Any]
) -> None:
    """A job still acting as its owner keeps the owner's tokens after the session expired."""
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from authn.models import UserTokenCache
    from authn.tasks import token_caches_purge_expired
    from enrollments.models import JobKind
    from instances.models import DpsInstance

    client = Client(SERVER_NAME="localhost")
    _signin(client, endpoints)
    owner = BulkJob._meta.get_field("owner").related_model.objects.get(
        entra_identity__upn=PERSONAS["dana"][0]  # type: ignore[index]
    )
    job = BulkJob.objects.create(
        kind=JobKind.EXPORT,
        owner=owner,
        instance=DpsInstance.objects.get(name=INSTANCE),
        state=JobState.RUNNING,
    )
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert token_caches_purge_expired() == 0
    assert UserTokenCache.objects.filter(user=owner).exists()
    BulkJob.objects.filter(pk=job.pk).update(state=JobState.COMPLETED)
    assert token_caches_purge_expired() == 1
    assert not UserTokenCache.objects.filter(user=owner).exists()
