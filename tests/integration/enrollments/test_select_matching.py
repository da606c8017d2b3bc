"""\"Select all N matching\": a fleet-index query feeds the bulk jobs (issue 13).

Against the emulators, signed in as the demo users. The pages queue Celery tasks on commit;
here the task bodies are called directly, and the job reaches DPS as its owner through the
real token broker, so the personas' Azure roles decide.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.bulk import jobs as bulk
from enrollments.bulk import workflow
from enrollments.dps.exceptions import DpsNotFound
from enrollments.dps.types import InitialTwin
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, PauseReason, RowStatus
from fleet.models import IndexedRecord
from instances.models import DpsInstance
from tests.integration.fleet.support import run_pass

from .conftest import INSTANCE, unique

pytestmark = pytest.mark.django_db
URL = f"/dps/{INSTANCE}/bulk/select-matching/enrollment/"
BULK = f"/dps/{INSTANCE}/bulk"


@pytest.fixture(autouse=True)
def _bulk_settings(settings: Any, tmp_path: Any) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


@pytest.fixture
def prod(azure_settings: Any, dps_instances: Any) -> DpsInstance:
    return DpsInstance.objects.get(name=INSTANCE)


def _plant(seed: Any, stem: str, plant: str, n: int, **fields: Any) -> list[str]:
    twin = InitialTwin.of(tags={"plant": plant})
    return [
        seed.enrollment(f"{stem}-p{plant}-{i}", initial_twin=twin, **fields).registration_id
        for i in range(n)
    ]


def _job(response: Any) -> BulkJob:
    assert response.status_code == 302, response.content[:800]
    return BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def _run(job: BulkJob) -> BulkJob:
    workflow.job_prepare(job.pk)  # a second call (job already running) is a no-op
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    return job


def _change_outside(owner_client: Any, rid: str) -> None:
    """Change a record directly on the emulator (SAS): its ETag moves past the index's."""
    current = owner_client.enrollment_get(rid)
    current.initial_twin = InitialTwin.of(tags={"plant": "3", "touched": "yes"})
    current.attestation = owner_client.enrollment_attestation_mechanism(rid)
    owner_client.enrollment_put(current, if_match=current.etag)


def _status(owner_client: Any, rid: str) -> str:
    return str(owner_client.enrollment_get(rid).provisioning_status)


def _indexed_status(prod: DpsInstance, rid: str) -> str:
    return IndexedRecord.objects.get(instance=prod, kind="enrollment", key=rid.lower()).status


def test_disable_all_matching_changes_exactly_those_and_conflicts_on_a_change_since(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    stem = unique("selst")
    matching = _plant(seed, stem, "3", 4)
    other = _plant(seed, stem, "1", 2)
    run_pass(prod)
    changed = matching[-1]
    _change_outside(owner_client, changed)
    query = urlencode({"q": stem, "tag": "plant=3", "page": "2"})
    dana = signed_in("dana")

    confirm = dana.post(URL, {"action": "disable", "query_string": query})
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert 'data-testid="confirm-select-matching-button"' in html
    assert "Disable 4" in html
    assert not BulkJob.objects.exists()

    job = _job(dana.post(URL, {"action": "disable", "query_string": query, "confirm": "on"}))
    assert (job.kind, job.options["status"], job.options["shown"]) == (
        JobKind.SET_STATUS,
        "disabled",
        4,
    )
    # The request stores the query, not the rows: the worker's prepare step builds them.
    assert not BulkRow.objects.filter(job=job).exists()
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.options["selected"] == 4
    rows = BulkRow.objects.filter(job=job)
    assert set(rows.values_list("registration_id", flat=True)) == set(matching)
    index = dict(
        IndexedRecord.objects.filter(instance=prod, kind="enrollment").values_list(
            "record_id", "etag"
        )
    )
    assert {r.registration_id: r.etag for r in rows} == {rid: index[rid] for rid in matching}
    job = _run(job)
    assert (job.state, job.count_done, job.count_conflict) == (
        JobState.COMPLETED_WITH_ERRORS,
        3,
        1,
    )
    for rid in matching[:-1]:
        assert _status(owner_client, rid) == "disabled"
        assert _indexed_status(prod, rid) == "disabled"  # written through to the index
    assert _status(owner_client, changed) == "enabled"
    conflict = BulkRow.objects.get(job=job, registration_id=changed)
    assert (conflict.status, conflict.error_code) == (RowStatus.CONFLICT, "412")
    for rid in other:
        assert _status(owner_client, rid) == "enabled"
    # One audit event per record changed, as the owner; keys carried (the record still works).
    updates = AuditEvent.objects.filter(
        action=AuditAction.ENROLLMENT_UPDATE, target_id__in=matching, outcome=AuditOutcome.SUCCESS
    )
    assert updates.count() == 3
    assert owner_client.enrollment_attestation_mechanism(matching[0]).symmetric_key is not None


def test_enable_all_matching(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    stem = unique("selen")
    off = _plant(seed, stem, "5", 3, provisioning_status="disabled")
    run_pass(prod)
    query = urlencode({"q": stem, "status": "disabled"})
    job = _run(
        _job(
            signed_in("dana").post(
                URL, {"action": "enable", "query_string": query, "confirm": "on"}
            )
        )
    )
    assert (job.state, job.count_done) == (JobState.COMPLETED, 3)
    assert {_status(owner_client, rid) for rid in off} == {"enabled"}


def test_keys_the_role_cannot_read_fail_the_row_instead_of_being_regenerated(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    """oscar may write but not read keys: a PUT without them would make DPS generate new ones."""
    stem = unique("selkey")
    rid = _plant(seed, stem, "5", 1)[0]
    keys = owner_client.enrollment_attestation_mechanism(rid).to_json()
    run_pass(prod)
    oscar = signed_in("oscar")
    shown = oscar.post(URL, {"action": "disable", "query_string": f"q={stem}"})
    assert 'data-testid="select-matching-keys"' in shown.content.decode()
    job = _run(
        _job(oscar.post(URL, {"action": "disable", "query_string": f"q={stem}", "confirm": "on"}))
    )
    row = BulkRow.objects.get(job=job)
    assert (job.state, row.status) == (JobState.COMPLETED_WITH_ERRORS, RowStatus.FAILED)
    assert "attestation-mechanism" in row.message
    assert _status(owner_client, rid) == "enabled"
    assert owner_client.enrollment_attestation_mechanism(rid).to_json() == keys


def test_delete_all_matching_deletes_exactly_those(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    stem = unique("seldel")
    matching = _plant(seed, stem, "7", 3)
    other = _plant(seed, stem, "8", 1)
    run_pass(prod)
    _change_outside(owner_client, matching[0])
    query = urlencode({"q": stem, "tag": "plant=7"})
    job = _run(
        _job(
            signed_in("dana").post(URL, {"action": "delete", "query_string": query, "confirm": "1"})
        )
    )
    assert job.kind == JobKind.DELETE_SELECTED
    assert (job.count_done, job.count_conflict) == (2, 1)
    for rid in matching[1:]:
        with pytest.raises(DpsNotFound):
            owner_client.enrollment_get(rid)
    assert owner_client.enrollment_get(matching[0])  # changed since: a conflict, kept
    assert owner_client.enrollment_get(other[0])


def test_export_all_matching_writes_exactly_the_filtered_set(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    stem = unique("selexp")
    matching = _plant(seed, stem, "2", 3)
    _plant(seed, stem, "4", 2)
    run_pass(prod)
    query = urlencode({"q": stem, "tag": "plant=2"})
    reggie = signed_in("reggie")  # read only: export is allowed
    job = _run(_job(reggie.post(URL, {"action": "export", "query_string": query, "confirm": "on"})))
    assert (job.kind, job.state, job.count_done) == (JobKind.EXPORT, JobState.COMPLETED, 3)
    rows = list(csv.DictReader(io.StringIO(Path(job.result_path).read_text(encoding="utf-8"))))
    assert sorted(r["registrationId"] for r in rows) == sorted(matching)


@pytest.mark.parametrize(("persona", "action"), [("reggie", "disable"), ("oscar", "delete")])
def test_without_the_capability_403_audited_and_no_job(
    prod: DpsInstance, seed: Any, signed_in: Any, persona: str, action: str
) -> None:
    stem = unique("seldeny")
    _plant(seed, stem, "3", 1)
    run_pass(prod)
    client = signed_in(persona)
    response = client.post(URL, {"action": action, "query_string": f"q={stem}", "confirm": "on"})
    assert response.status_code == 403
    assert not BulkJob.objects.exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.DENIED, outcome=AuditOutcome.DENIED, target_id=URL
    ).exists()


def test_the_control_offers_only_what_the_role_allows(prod: DpsInstance, signed_in: Any) -> None:
    def control(persona: str, kind: str = "enrollment") -> str:
        page = signed_in(persona).get(f"/instances/{INSTANCE}/fleet/enrollments/")
        return render_to_string(
            "enrollments/bulk/_select_matching.html",
            {
                "matching_total": 12,
                "query_string": "q=a&tag=x%3D1",
                "record_kind": kind,
                "instance": prod,
            },
            request=page.wsgi_request,
        )

    full = control("dana")
    for action in ("disable", "enable", "delete", "export"):
        assert f'data-testid="select-matching-{action}"' in full
    assert 'value="q=a&amp;tag=x%3D1"' in full
    assert f'action="{URL}"' in full
    reader = control("reggie")
    assert 'data-testid="select-matching-export"' in reader
    for action in ("disable", "enable", "delete"):
        assert f'data-testid="select-matching-{action}"' not in reader
    assert 'data-testid="select-matching-delete"' not in control("oscar")
    assert 'data-testid="select-matching-disable"' in control("oscar")
    assert "select-matching" not in control("dana", kind="registration")
    assert 'data-testid="select-matching-export"' not in control("dana", kind="group")


def test_bad_requests(prod: DpsInstance, signed_in: Any) -> None:
    dana = signed_in("dana")
    assert dana.post(URL, {"action": "explode", "query_string": ""}).status_code == 400
    assert dana.post(URL, {"action": "disable", "query_string": "tag=nokey"}).status_code == 400
    registration_url = URL.replace("/enrollment/", "/registration/")
    assert dana.post(registration_url, {"action": "disable"}).status_code == 404
    assert dana.get(URL).status_code == 400  # no action
    shown = dana.get(URL, {"action": "disable", "query_string": "q=x", "confirm": "on"})
    assert shown.status_code == 200  # a GET shows what a POST would do, never starts it
    assert not BulkJob.objects.exists()
    none = dana.post(URL, {"action": "disable", "query_string": "q=nothing-matches-this"})
    assert 'data-testid="select-matching-none"' in none.content.decode()
    assert signed_in("nora").post(URL, {"action": "export"}).status_code == 403


def _status_job(prod: DpsInstance, seed: Any, signed_in: Any, n: int = 3) -> BulkJob:
    from fleet.selectors import RecordQuery, matching_ids

    stem = unique("selsm")
    _plant(seed, stem, "6", n)
    run_pass(prod)
    dana = signed_in("dana")
    user = dana.get(f"{BULK}/jobs/").wsgi_request.user
    return bulk.job_create(
        owner=user,
        instance=prod,
        kind=JobKind.SET_STATUS,
        capabilities=["enrollments.read", "enrollments.write"],
        options={"status": "disabled"},
        selection=matching_ids(prod, "enrollment", RecordQuery(search=stem)),
    )


def test_status_job_cancelled_while_running_skips_the_rest(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    job = _status_job(prod, seed, signed_in)
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert (job.state, job.progress_total, job.count_update) == (JobState.RUNNING, 3, 3)
    bulk.job_cancel(job=job, actor=job.owner)
    assert BulkJob.objects.get(pk=job.pk).state == JobState.CANCELLING
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_skipped, job.count_done) == (JobState.CANCELLED, 3, 0)
    with pytest.raises(workflow.InvalidTransition):
        workflow.transition(job.pk, (JobState.CANCELLED,), JobState.RUNNING)


def test_status_job_paused_for_signin_resumes_and_finishes(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    job = _status_job(prod, seed, signed_in, n=2)
    workflow.job_prepare(job.pk)
    assert workflow.transition(
        job.pk, (JobState.RUNNING,), JobState.PAUSED, pause_reason=PauseReason.NEEDS_SIGNIN
    )
    assert workflow.job_resume(job.pk)
    assert BulkJob.objects.get(pk=job.pk).state == JobState.RUNNING
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_done) == (JobState.COMPLETED, 2)
    for rid in BulkRow.objects.filter(job=job).values_list("registration_id", flat=True):
        assert _status(owner_client, rid) == "disabled"


def test_a_row_in_doubt_already_applied_is_done_without_a_second_write(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    job = _status_job(prod, seed, signed_in, n=1)
    workflow.job_prepare(job.pk)
    row = BulkRow.objects.get(job=job)
    current = owner_client.enrollment_get(row.registration_id)
    current.provisioning_status = "disabled"
    current.attestation = owner_client.enrollment_attestation_mechanism(row.registration_id)
    owner_client.enrollment_put(current, if_match=current.etag)  # as if the lost call applied
    BulkRow.objects.filter(pk=row.pk).update(
        status=RowStatus.SENDING, attempts=1, lease_until=timezone.now() - timedelta(seconds=1)
    )
    workflow.job_execute(job.pk)
    row.refresh_from_db()
    assert (row.status, row.message) == (RowStatus.DONE, "Already disabled.")


def test_the_live_region_renders_counters_and_rows(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    job = _status_job(prod, seed, signed_in, n=2)
    workflow.job_prepare(job.pk)
    dana = signed_in("dana")
    running = dana.get(f"{BULK}/jobs/{job.pk}/progress/?seen=running", HTTP_HX_REQUEST="true")
    html = running.content.decode()
    assert "HX-Refresh" not in running
    assert "<html" not in html
    assert 'data-testid="job-live"' in html
    assert 'hx-trigger="every 2s"' in html
    assert 'data-testid="count-update">2<' in html
    assert 'data-testid="count-done">0<' in html
    assert html.count('data-testid="row-status">Pending<') == 2
    workflow.job_execute(job.pk)
    done = dana.get(f"{BULK}/jobs/{job.pk}/progress/?seen=running", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"
    html = done.content.decode()
    assert 'data-testid="count-done">2<' in html
    assert html.count('data-testid="row-status">Done<') == 2
    assert "hx-trigger" not in html.split('data-testid="job-live"')[1].split(">")[0]
    page = dana.get(f"{BULK}/jobs/{job.pk}/").content.decode()
    assert 'data-testid="job-target-status">to disabled<' in page


def test_prepare_fails_the_job_when_nothing_matches_any_more(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    """Rows are built in the worker: a query matching nothing by then fails, never exports all."""
    stem = unique("selgone")
    rid = _plant(seed, stem, "9", 1)[0]
    run_pass(prod)
    reggie = signed_in("reggie")
    job = _job(reggie.post(URL, {"action": "export", "query_string": f"q={stem}", "confirm": "1"}))
    owner_client.enrollment_delete(rid)
    run_pass(prod)
    job = _run(job)
    assert (job.state, job.error) == (
        JobState.FAILED,
        "Nothing matches the list's filters any more.",
    )
    assert not BulkRow.objects.filter(job=job).exists()
