"""Bulk import in Chromium: upload, preview with diffs, confirm, results; no CSP violations.

Task bodies run in the test process between page loads (the real worker is covered by
tests/integration/enrollments/test_bulk_worker.py). Screenshots go to /tmp/bulk-*.png.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from enrollments.bulk import workflow
from enrollments.models import BulkJob, JobState

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INSTANCE = "dps-fleet-prod"
KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


@pytest.fixture
def bulk_settings(settings: Any, tmp_path: Path) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


def _sign_in(page: Any, portal: str) -> None:
    page.goto(portal + "/")
    page.get_by_test_id("signin-main").click()
    page.get_by_test_id("signin-username").fill("dana.contributor@contoso-iot.example")
    page.get_by_test_id("signin-password").fill("Dana-Demo-2026!")
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url(portal + "/")


def test_import_preview_confirm_in_the_browser(
    page: Any, portal: str, bulk_settings: None, tmp_path: Path
) -> None:
    """An operator uploads a file, reads the preview, confirms and sees every row's outcome."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _sign_in(page, portal)
    p = f"b{uuid.uuid4().hex[:6]}"
    lines = [
        "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags"
    ]
    lines += [f"create,{p}-{i},symmetricKey,{KEY},enabled," for i in range(12)]
    lines += ["create,bad id!,symmetricKey,,enabled,", f"create,{p}-j,symmetricKey,,enabled,{{no"]
    source = tmp_path / "devices.csv"
    source.write_text("\r\n".join(lines) + "\r\n")

    page.goto(f"{portal}/dps/{INSTANCE}/bulk/import/")
    page.screenshot(path="/tmp/bulk-import.png", full_page=True)
    page.get_by_test_id("import-file").set_input_files(str(source))
    page.get_by_test_id("import-submit").click()
    page.wait_for_url("**/bulk/jobs/*/")
    assert page.get_by_test_id("job-state").inner_text() == "Queued"
    job = BulkJob.objects.latest("id")

    workflow.job_prepare(job.pk)
    page.reload()
    assert page.get_by_test_id("job-state").inner_text() == "Awaiting confirmation"
    assert page.get_by_test_id("count-create").inner_text() == "12"
    assert page.get_by_test_id("count-invalid").inner_text() == "2"
    page.screenshot(path="/tmp/bulk-preview.png", full_page=True)

    page.get_by_test_id("confirm-button").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("job-state").inner_text() == "Running"
    page.screenshot(path="/tmp/bulk-running.png", full_page=True)
    workflow.job_execute(job.pk)
    # The poll notices the new state and reloads the page by itself.
    page.get_by_test_id("count-done").filter(has_text="12").wait_for(timeout=10000)
    assert page.get_by_test_id("job-state").inner_text() == "Completed with errors"
    page.get_by_test_id("row-filter").locator("select[name=plan]").select_option("invalid")
    # The filter swaps the table in place: wait for a create row to leave it.
    page.get_by_test_id("row-2").wait_for(state="detached")
    assert page.get_by_test_id("row-table").locator("tbody tr").count() == 2
    page.screenshot(path="/tmp/bulk-done.png", full_page=True)

    page.goto(f"{portal}/dps/{INSTANCE}/bulk/jobs/")
    assert page.get_by_test_id(f"job-row-{job.pk}").is_visible()
    page.screenshot(path="/tmp/bulk-jobs.png", full_page=True)
    page.goto(f"{portal}/dps/{INSTANCE}/bulk/export/")
    page.screenshot(path="/tmp/bulk-export.png", full_page=True)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
