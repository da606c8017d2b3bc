"""The CSV import refuses hubs not linked to the instance and CAs not verified there, as the owner."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from authn.arm import ArmClient, ArmUnavailable
from controlplane.selectors import linked_hubs_forget
from enrollments.bulk import workflow
from enrollments.models import BulkJob, BulkRow, JobState, PauseReason, RowPlan
from instances.models import DpsInstance
from tests.integration.controlplane.conftest import INSTANCE, unique
from tests.integration.controlplane.test_certificate_pages import upload, verified_through_portal
from tests.support import certs

pytestmark = pytest.mark.django_db
HEADER = (
    "operation,registrationId,attestationType,x509CaReferencePrimary,iotHubs,provisioningStatus"
)
WEU, NEU = "hub-fleet-weu.azure-devices.net", "hub-fleet-neu.azure-devices.net"
OTHER = "hub-elsewhere.azure-devices.net"


@pytest.fixture(autouse=True)
def _bulk_settings(settings: Any, tmp_path: Any) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


def import_prepared(client: Client, lines: list[str]) -> BulkJob:
    body = "\r\n".join([HEADER, *lines]) + "\r\n"
    r = client.post(
        reverse("bulk:import", args=[INSTANCE]),
        {"file": SimpleUploadedFile("in.csv", body.encode())},
    )
    assert r.status_code == 302, r.content[:800]
    job = BulkJob.objects.get(pk=int(r["Location"].rstrip("/").rsplit("/", 1)[1]))
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    return job


def row(job: BulkJob, line: int) -> tuple[str, dict[str, str]]:
    r = BulkRow.objects.get(job=job, line_no=line)
    return r.plan, {e["column"]: e["message"] for e in json.loads(r.errors or "[]")}


def test_unlinked_hub_and_unverified_ca_are_row_errors(persona: Callable[[str], Client]) -> None:
    carl = persona("carl")
    ca, unverified, p = unique("csvca"), unique("csvuv"), unique("csv")
    verified_through_portal(carl, certs.ca("CSV CA"), ca)
    assert (
        upload(carl, unverified, certs.pem(certs.ca("CSV Unverified CA").cert).encode()).status_code
        == 302
    )
    job = import_prepared(
        carl,
        [
            f"create,{p}-ok,x509,{ca},{WEU},enabled",
            f"create,{p}-uv,x509,{unverified},,enabled",
            f"create,{p}-hub,symmetricKey,,{NEU} {OTHER},enabled",
            f"create,{p}-plain,symmetricKey,,,enabled",
        ],
    )
    assert job.state == JobState.AWAITING_CONFIRMATION
    assert row(job, 2) == (RowPlan.CREATE, {})
    plan, errors = row(job, 3)
    assert plan == RowPlan.INVALID
    assert f"{unverified} is not a verified CA certificate" in errors["x509CaReferencePrimary"]
    assert ca in errors["x509CaReferencePrimary"]
    plan, errors = row(job, 4)
    assert plan == RowPlan.INVALID
    assert f"{OTHER} is not linked to this DPS instance" in errors["iotHubs"]
    assert WEU in errors["iotHubs"]
    assert NEU in errors["iotHubs"]
    assert row(job, 5) == (RowPlan.CREATE, {})
    assert (job.count_invalid, job.count_create) == (2, 2)
    page = carl.get(reverse("bulk:job_detail", args=[INSTANCE, job.pk])).content.decode()
    assert 'data-testid="row-4"' in page
    assert f"{OTHER} is not linked" in page
    assert 'data-testid="references-unchecked"' not in page


def test_data_plane_only_owner_is_told_hubs_were_not_checked(
    persona: Callable[[str], Client],
) -> None:
    dana = persona("dana")
    job = import_prepared(dana, [f"create,{unique('dn')},symmetricKey,,{OTHER},enabled"])
    assert job.state == JobState.AWAITING_CONFIRMATION
    assert row(job, 2) == (RowPlan.CREATE, {})
    page = dana.get(reverse("bulk:job_detail", args=[INSTANCE, job.pk])).content.decode()
    assert 'data-testid="references-unchecked"' in page
    assert "provisioningServices/read" in page


def test_arm_outage_pauses_the_import_until_hubs_can_be_checked(
    persona: Callable[[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    carl = persona("carl")
    linked_hubs_forget(DpsInstance.objects.get(name=INSTANCE))

    def unreachable(*_args: Any, **_kw: Any) -> Any:
        raise ArmUnavailable("ARM could not be reached (ConnectTimeout).", status=None)

    with monkeypatch.context() as patch:
        patch.setattr(ArmClient, "provisioning_service_get", unreachable)
        job = import_prepared(carl, [f"create,{unique('out')},symmetricKey,,{OTHER},enabled"])
    assert (job.state, job.pause_reason) == (JobState.PAUSED, PauseReason.SERVICE_UNAVAILABLE)
    assert row(job, 2)[0] == RowPlan.PENDING  # nothing passed unchecked
    workflow.job_prepare(job.pk)  # what the sweep does once Azure answers
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_CONFIRMATION
    assert row(job, 2)[0] == RowPlan.INVALID
