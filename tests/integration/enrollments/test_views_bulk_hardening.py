"""Bulk hardening (issue 11) through the pages, signed in as the demo users.

Deletes in an import need the delete capability; "delete selected" deletes only the version
the list showed; a job is seen only with the capabilities its kind needs.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn.capabilities import _cache_key
from enrollments.bulk import workflow
from enrollments.dps.exceptions import DpsNotFound
from enrollments.dps.types import IndividualEnrollment
from enrollments.models import BulkJob, BulkRow, JobState, RowStatus

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}/bulk"
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags"


@pytest.fixture(autouse=True)
def _bulk_settings(settings: Any, tmp_path: Any) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


def _upload(lines: list[str]) -> SimpleUploadedFile:
    return SimpleUploadedFile("in.csv", ("\r\n".join([HEADER, *lines]) + "\r\n").encode())


def _job(response: Any) -> BulkJob:
    assert response.status_code == 302, response.content[:800]
    return BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def _denied(path: str) -> int:
    return AuditEvent.objects.filter(
        action=AuditAction.DENIED, outcome=AuditOutcome.DENIED, target_id=path
    ).count()


def test_import_that_deletes_needs_the_delete_capability(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """Oscar (write, no delete): the preview says so, offers no confirm, and confirm is a 403."""
    p = f"h{uuid.uuid4().hex[:6]}"
    doomed = seed.enrollment(f"{p}-old").registration_id
    oscar = signed_in("oscar")
    job = _job(
        oscar.post(
            f"{BASE}/import/",
            {"file": _upload([f"delete,{doomed},,,,", f"create,{p}-new,symmetricKey,,enabled,"])},
        )
    )
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_delete) == (JobState.AWAITING_CONFIRMATION, 1), job.error
    html = oscar.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    note = re.search(r'data-testid="delete-capability-missing"[^>]*>(.*?)</div>', html, re.S)
    assert note is not None
    assert "deletes 1 enrollment" in note.group(1)
    assert "enrollments.delete" in note.group(1)
    assert 'data-testid="confirm-button"' not in html
    path = f"{BASE}/jobs/{job.pk}/confirm/"
    before = _denied(path)
    assert oscar.post(path).status_code == 403
    assert _denied(path) == before + 1
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_CONFIRMATION
    assert owner_client.enrollment_get(doomed)
    # The same file for someone who may delete: no note, the button is there.
    dana = signed_in("dana")
    other = _job(dana.post(f"{BASE}/import/", {"file": _upload([f"delete,{doomed},,,,"])}))
    workflow.job_prepare(other.pk)
    html = dana.get(f"{BASE}/jobs/{other.pk}/").content.decode()
    assert 'data-testid="delete-capability-missing"' not in html
    assert 'data-testid="confirm-button"' in html


def _hidden(html: str, name: str) -> list[str]:
    return [
        v.replace("&quot;", '"')
        for v in re.findall(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    ]


def test_delete_selected_deletes_only_the_version_the_list_showed(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """A record changed after the list was shown ends as a conflict and stays; the rest go."""
    p = f"s{uuid.uuid4().hex[:6]}"
    records = [seed.enrollment(f"{p}-{i}") for i in range(3)]
    dana = signed_in("dana")
    listing = dana.get(f"/dps/{INSTANCE}/enrollments/", {"size": 100}).content.decode()
    shown = []
    for record in records:
        box = re.search(
            rf'<input[^>]*data-testid="select-{re.escape(record.registration_id)}"[^>]*>', listing
        )
        assert box is not None
        value = re.search(r'value="([^"]*)"', box.group(0))
        assert value is not None
        shown.append(value.group(1).replace("&quot;", '"'))
    # Someone changes the second record in DPS while the list is on screen.
    changed = owner_client.enrollment_get(records[1].registration_id).to_json()
    changed["provisioningStatus"] = "disabled"
    owner_client.enrollment_put(IndividualEnrollment.from_json(changed), if_match=changed["etag"])

    page = dana.post(f"{BASE}/delete-selected/", {"selected": shown}).content.decode()
    carried = _hidden(page, "selected")
    assert carried == shown  # the confirmation carries each row's etag on
    job = _job(dana.post(f"{BASE}/delete-selected/", {"selected": carried, "confirm": "yes"}))
    workflow.job_prepare(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_done, job.count_conflict) == (
        JobState.COMPLETED_WITH_ERRORS,
        2,
        1,
    )
    row = BulkRow.objects.get(job=job, registration_id=records[1].registration_id)
    assert row.status == RowStatus.CONFLICT
    assert owner_client.enrollment_get(records[1].registration_id).provisioning_status == (
        "disabled"
    )
    for record in (records[0], records[2]):
        with pytest.raises(DpsNotFound):
            owner_client.enrollment_get(record.registration_id)
    html = dana.get(f"{BASE}/jobs/{job.pk}/", {"status": "conflict"}).content.decode()
    assert records[1].registration_id in html
    assert 'data-testid="count-conflict">1<' in html


def _limit_caps(user: Any, instance: Any, names: list[str]) -> None:
    """Make ``user``'s cached capabilities on ``instance`` exactly ``names`` (a role change)."""
    cache.set(_cache_key(user, instance), sorted(names), 600)


def test_registration_deletion_jobs_need_the_registration_capabilities(
    signed_in: Any, seed: Any
) -> None:
    """With enrollments.read only, a registration-deletion job is neither listed nor shown."""
    group = seed.group(f"g{uuid.uuid4().hex[:6]}").enrollment_group_id
    seed.registration(f"{group}-dev0", group)
    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/groups/{group}/delete-registrations/"))
    workflow.job_prepare(job.pk)
    export = _job(dana.post(f"{BASE}/export/", {}))
    assert f'data-testid="job-row-{job.pk}"' in dana.get(f"{BASE}/jobs/").content.decode()

    _limit_caps(job.owner, job.instance, ["enrollments.read"])
    listed = dana.get(f"{BASE}/jobs/").content.decode()
    assert f'data-testid="job-row-{job.pk}"' not in listed
    assert f'data-testid="job-row-{export.pk}"' in listed
    for suffix in ("", "progress/", "report/"):
        path = f"{BASE}/jobs/{job.pk}/{suffix}"
        before = _denied(path)
        assert dana.get(path).status_code == 403, suffix
        assert _denied(path) == before + 1
    assert dana.post(f"{BASE}/jobs/{job.pk}/cancel/").status_code == 403
    assert dana.get(f"{BASE}/jobs/{export.pk}/").status_code == 200


def test_export_with_keys_is_deleted_after_its_first_download(signed_in: Any, seed: Any) -> None:
    """The file streams once; a second download explains it is gone and how to export again."""
    from pathlib import Path

    rid = f"x{uuid.uuid4().hex[:6]}"
    seed.enrollment(rid)
    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/export/", {"include_keys": "on"}))
    workflow.job_prepare(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    path = Path(job.result_path)
    assert path.exists()
    first = dana.get(f"{BASE}/jobs/{job.pk}/download/")
    assert first.status_code == 200
    body = b"".join(first.streaming_content).decode()
    assert rid in body
    assert not path.exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.EXPORT, target_id=str(job.pk), message__contains="deleted"
    ).exists()
    second = dana.get(f"{BASE}/jobs/{job.pk}/download/")
    assert second.status_code == 410
    html = second.content.decode()
    assert 'data-testid="export-file-gone"' in html
    assert "deleted once downloaded" in html
    assert f'href="{BASE}/export/" data-testid="export-again"' in html
    detail = dana.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    assert 'data-testid="download-export"' not in detail
    assert 'data-testid="export-file-gone"' in detail
    # An export without keys stays downloadable until it expires.
    plain = _job(dana.post(f"{BASE}/export/", {}))
    workflow.job_prepare(plain.pk)
    workflow.job_execute(plain.pk)
    for _ in range(2):
        response = dana.get(f"{BASE}/jobs/{plain.pk}/download/")
        assert response.status_code == 200
        b"".join(response.streaming_content)
