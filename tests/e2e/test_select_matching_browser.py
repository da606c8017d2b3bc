"""\"Select all matching\" in Chromium: filter the index, disable what matches, watch the job.

The list page that embeds the control belongs to another branch; this test filters the fleet
index list, then opens the select-matching view with that list's query string, as the
control does. Task bodies run in the test process between page loads; the job page's live
region follows them by itself. Screenshots go to /tmp/select-*.png.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from enrollments.bulk import workflow
from enrollments.dps.auth import parse_connection_string
from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, IndividualEnrollment, InitialTwin
from enrollments.models import BulkJob, JobKind, JobState
from fleet.models import IndexedRecord
from instances.models import DpsInstance
from tests.integration.fleet.support import run_pass

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INSTANCE = "dps-fleet-prod"


@pytest.fixture
def bulk_settings(settings: Any, tmp_path: Path) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


@pytest.fixture
def owner(endpoints: dict[str, Any]) -> DpsClient:
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cs = parse_connection_string(entry["connection_string"])
    return DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"])


def _sign_in(page: Any, portal: str) -> None:
    page.goto(portal + "/")
    page.get_by_test_id("signin-main").click()
    page.get_by_test_id("signin-username").fill("dana.contributor@contoso-iot.example")
    page.get_by_test_id("signin-password").fill("Dana-Demo-2026!")
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url(portal + "/")


def test_filter_select_all_matching_disable(
    page: Any, portal: str, bulk_settings: None, owner: DpsClient
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    stem = f"sel{uuid.uuid4().hex[:6]}"
    ids = {}
    for i in range(6):
        plant = "3" if i < 4 else "1"
        rid = f"{stem}-{i}"
        owner.enrollment_put(
            IndividualEnrollment(
                registration_id=rid,
                attestation=AttestationMechanism.for_symmetric_key(),
                initial_twin=InitialTwin.of(tags={"plant": plant}),
            )
        )
        ids[rid] = plant
    prod = DpsInstance.objects.get(name=INSTANCE)
    run_pass(prod)
    _sign_in(page, portal)

    filters = {"q": stem, "tag": "plant=3", "status": "enabled"}
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/?{urlencode(filters)}")
    assert page.locator('[data-testid="record-table"] tbody tr').count() == 4
    page.screenshot(path="/tmp/select-list.png", full_page=True)

    query = urlencode({"action": "disable", "query_string": urlencode(filters)})
    page.goto(f"{portal}/dps/{INSTANCE}/bulk/select-matching/enrollment/?{query}")
    assert "Disable 4" in page.get_by_test_id("confirm-select-matching-button").inner_text()
    page.screenshot(path="/tmp/select-confirm.png", full_page=True)
    page.get_by_test_id("confirm-select-matching-button").click()
    page.wait_for_url("**/bulk/jobs/*/")
    job = BulkJob.objects.latest("id")
    assert job.kind == JobKind.SET_STATUS

    workflow.job_prepare(job.pk)
    # The live region notices the new state by itself (no reload from the test).
    page.get_by_test_id("job-state").filter(has_text="Running").wait_for(timeout=10000)
    assert page.get_by_test_id("count-update").inner_text() == "4"
    workflow.job_execute(job.pk)
    page.get_by_test_id("count-done").filter(has_text="4").wait_for(timeout=10000)
    assert page.get_by_test_id("job-state").inner_text() == "Completed"
    assert (
        page.get_by_test_id("row-table")
        .get_by_test_id("row-status")
        .filter(has_text="Done")
        .count()
        == 4
    )
    page.screenshot(path="/tmp/select-done.png", full_page=True)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED

    for rid, plant in ids.items():
        want = "disabled" if plant == "3" else "enabled"
        assert owner.enrollment_get(rid).provisioning_status == want
        assert IndexedRecord.objects.get(instance=prod, key=rid).status == want
    page.goto(
        f"{portal}/dps/{INSTANCE}/enrollments/?" + urlencode({"q": stem, "status": "disabled"})
    )
    assert page.locator('[data-testid="record-table"] tbody tr').count() == 4
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
