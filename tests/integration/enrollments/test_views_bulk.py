"""Bulk job pages against the emulators, signed in as the demo users.

The pages queue Celery tasks on commit; here the task bodies are called directly (the real
worker runs in test_bulk_worker.py). The job reaches DPS as its owner through the real token
broker (PortalAccess), so the personas' Azure roles decide.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.bulk import workflow
from enrollments.dps.exceptions import DpsNotFound
from enrollments.models import BulkJob, JobKind, JobState, PauseReason

from .conftest import INSTANCE, PERSONAS

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}/bulk"
KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags"
PERSONAS.setdefault("ada", ("ada.admin@contoso-iot.example", "Ada-Demo-2026!"))


@pytest.fixture(autouse=True)
def _bulk_settings(settings: Any, tmp_path: Any) -> None:
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_ACCESS_BACKEND = "enrollments.bulk.access.PortalAccess"
    settings.DPS_OPS_PER_MINUTE_OVERRIDES = {INSTANCE: 60000}
    settings.BULK_RATELIMIT_REDIS_URL = None
    settings.REDIS_URL = None


def _upload(lines: list[str], name: str = "in.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, ("\r\n".join([HEADER, *lines]) + "\r\n").encode())


def _job(response: Any) -> BulkJob:
    assert response.status_code == 302, response.content[:800]
    job_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    return BulkJob.objects.get(pk=job_id)


def _denied_events(path: str) -> int:
    return AuditEvent.objects.filter(
        action=AuditAction.DENIED, outcome=AuditOutcome.DENIED, target_id__startswith=path
    ).count()


#
# Access
#


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/import/"),
        ("get", "/format/"),
        ("get", "/export/"),
        ("post", "/delete-selected/"),
        ("get", "/groups/g1/delete-registrations/"),
        ("get", "/jobs/"),
        ("get", "/jobs/1/"),
        ("get", "/jobs/1/progress/"),
        ("post", "/jobs/1/confirm/"),
        ("post", "/jobs/1/cancel/"),
        ("get", "/jobs/1/report/"),
        ("get", "/jobs/1/download/"),
    ],
)
def test_anonymous_is_sent_to_sign_in(signed_in: Any, method: str, path: str) -> None:
    """Every bulk page redirects an anonymous visitor to the sign-in page."""
    response = getattr(signed_in("anonymous"), method)(BASE + path)
    assert response.status_code == 302
    assert response["Location"].startswith("/auth/login/")


@pytest.mark.parametrize(
    ("persona", "method", "path", "data"),
    [
        ("reggie", "get", "/import/", None),  # reader: no write
        ("kim", "post", "/import/", {}),  # reveal but no write
        ("reggie", "post", "/delete-selected/", {"selected": "x"}),
        ("reggie", "post", "/groups/g1/delete-registrations/", {}),
        ("nora", "get", "/jobs/", None),  # no role at all
        ("nora", "get", "/export/", None),
    ],
)
def test_missing_capability_is_403_and_audited(
    signed_in: Any, persona: str, method: str, path: str, data: Any
) -> None:
    """A role without the capability gets the 403 page and a denied audit event."""
    client = signed_in(persona)
    before = _denied_events(BASE + path)
    args = (BASE + path,) if data is None else (BASE + path, data)
    response = getattr(client, method)(*args)
    assert response.status_code == 403
    assert _denied_events(BASE + path) == before + 1
    assert not BulkJob.objects.exists()


def test_export_with_keys_needs_reveal(signed_in: Any) -> None:
    """A reader may export without keys; asking for keys is refused; the box is not offered."""
    reggie = signed_in("reggie")
    page = reggie.get(f"{BASE}/export/")
    assert page.status_code == 200
    assert b'data-testid="include-keys"' not in page.content
    assert b'data-testid="keys-unavailable"' in page.content
    assert reggie.post(f"{BASE}/export/", {"include_keys": "on"}).status_code == 403
    assert not BulkJob.objects.exists()
    job = _job(reggie.post(f"{BASE}/export/", {}))
    assert (job.kind, job.options["include_keys"]) == (JobKind.EXPORT, False)


def test_post_without_csrf_token_is_refused(signed_in: Any) -> None:
    """Forms need the CSRF token."""
    dana = signed_in("dana")
    strict = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
    strict.cookies = dana.cookies
    response = strict.post(f"{BASE}/import/", {"file": _upload(["create,x,symmetricKey,,,"])})
    assert response.status_code == 403
    assert not BulkJob.objects.exists()


def test_someone_elses_job_is_403_but_an_admin_sees_it(signed_in: Any) -> None:
    """Jobs are their owner's; Portal.Admin sees and lists everyone's."""
    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/export/", {}))
    reggie = signed_in("reggie")
    assert reggie.get(f"{BASE}/jobs/{job.pk}/").status_code == 403
    assert reggie.post(f"{BASE}/jobs/{job.pk}/cancel/").status_code == 403
    listed = reggie.get(f"{BASE}/jobs/?everyone=on")
    assert f'data-testid="job-row-{job.pk}"' not in listed.content.decode()
    ada = signed_in("ada")
    assert ada.get(f"{BASE}/jobs/{job.pk}/").status_code == 200
    assert (
        f'data-testid="job-row-{job.pk}"' in ada.get(f"{BASE}/jobs/?everyone=on").content.decode()
    )
    assert f'data-testid="job-row-{job.pk}"' not in ada.get(f"{BASE}/jobs/").content.decode()
    # An admin may cancel, but only the owner downloads.
    assert ada.post(f"{BASE}/jobs/{job.pk}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


#
# Import → preview → confirm → results
#


def test_import_page_offers_template_example_and_help(signed_in: Any) -> None:
    """The import page has the upload form, both downloads and the format help."""
    html = signed_in("dana").get(f"{BASE}/import/").content.decode()
    for testid in (
        "import-form",
        "import-file",
        "download-template",
        "download-example",
        "format-help",
    ):
        assert f'data-testid="{testid}"' in html
    assert "/static/csv/template.csv" in html
    assert "/static/csv/example.csv" in html
    assert " style=" not in html
    assert "<script>" not in html
    reference = signed_in("dana").get(f"{BASE}/format/")
    assert reference["Content-Type"].startswith("text/plain")
    assert b"registrationId" in reference.content


def test_import_preview_confirm_results_and_report(
    signed_in: Any, owner_client: Any, seed: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Upload → preview with counts, invalid rows and diffs → confirm → per-row results and report."""
    p = f"v{uuid.uuid4().hex[:6]}"
    seed.enrollment(f"{p}-upd")
    dana = signed_in("dana")
    with django_capture_on_commit_callbacks() as queued:
        response = dana.post(
            f"{BASE}/import/",
            {
                "file": _upload(
                    [
                        f"create,{p}-new,symmetricKey,{KEY},enabled,",
                        f'update,{p}-upd,symmetricKey,,disabled,"{{""site"":1}}"',
                        "create,bad id!,symmetricKey,,enabled,",
                        f"create,{p}-json,symmetricKey,,enabled,{{nope",
                    ]
                ),
                "default_operation": "upsert",
            },
        )
    job = _job(response)
    assert len(queued) == 1  # the prepare task, queued on commit
    assert job.state == JobState.QUEUED
    assert job.source_name == "in.csv"
    page = dana.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page  # polling while queued

    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_CONFIRMATION, job.error
    response = dana.get(f"{BASE}/jobs/{job.pk}/")
    html = response.content.decode()
    assert response.context["job"].count_create == 1
    assert 'data-testid="count-invalid">2<' in html
    assert 'data-testid="count-update">1<' in html
    assert 'data-testid="confirm-button"' in html
    assert 'data-testid="preview-note"' in html
    assert "may contain only" in html or "registrationId" in html  # the invalid id's reason
    assert 'data-testid="row-diff"' in html
    assert "provisioningStatus" in html
    assert 'hx-trigger="every 2s"' not in html  # nothing to poll while awaiting confirmation
    # Nothing written yet.
    with pytest.raises(DpsNotFound):
        owner_client.enrollment_get(f"{p}-new")

    invalid_only = dana.get(f"{BASE}/jobs/{job.pk}/", {"plan": "invalid"})
    assert [i["row"].line_no for i in invalid_only.context["row_items"]] == [4, 5]
    fragment = dana.get(
        f"{BASE}/jobs/{job.pk}/", {"problems": "on"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="rows"
    )
    assert b"<html" not in fragment.content
    assert b'data-testid="row-table"' in fragment.content

    reggie = signed_in("reggie")
    assert reggie.post(f"{BASE}/jobs/{job.pk}/confirm/").status_code == 403
    with django_capture_on_commit_callbacks() as queued:
        assert dana.post(f"{BASE}/jobs/{job.pk}/confirm/").status_code == 302
    assert len(queued) == 1
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    progress = dana.get(f"{BASE}/jobs/{job.pk}/progress/?seen=running", HTTP_HX_REQUEST="true")
    assert b'data-testid="progress-bar"' in progress.content
    assert "HX-Refresh" not in progress
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    assert (job.count_done, job.count_invalid) == (2, 2)
    moved = dana.get(f"{BASE}/jobs/{job.pk}/progress/?seen=running", HTTP_HX_REQUEST="true")
    assert moved["HX-Refresh"] == "true"
    assert owner_client.enrollment_get(f"{p}-upd").provisioning_status == "disabled"
    done = dana.get(f"{BASE}/jobs/{job.pk}/", {"status": "done"})
    assert {i["row"].registration_id for i in done.context["row_items"]} == {f"{p}-new", f"{p}-upd"}
    # A second confirm is refused politely.
    again = dana.post(f"{BASE}/jobs/{job.pk}/confirm/", follow=True)
    assert "not waiting for confirmation" in again.content.decode()

    report = dana.get(f"{BASE}/jobs/{job.pk}/report/")
    assert report["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(report.streaming_content).decode())))
    by_line = {r["line"]: r for r in rows}
    assert by_line["2"]["outcome"] == "done"
    assert by_line["2"]["symmetricKeyPrimary"] == ""
    assert by_line["3"]["provisioningStatus"] == "disabled"
    assert by_line["4"]["plan"] == "invalid"
    assert "registrationId" in by_line["4"]["message"]
    assert "twinTags" in by_line["5"]["message"]


def test_upload_errors_are_shown_on_the_form(signed_in: Any, settings: Any) -> None:
    """An empty or oversized file is refused on the form; no job is created."""
    dana = signed_in("dana")
    empty = dana.post(f"{BASE}/import/", {"file": SimpleUploadedFile("e.csv", b"")})
    assert empty.status_code == 400
    settings.BULK_UPLOAD_MAX_BYTES = 10
    big = dana.post(f"{BASE}/import/", {"file": _upload(["create,x,symmetricKey,,,"])})
    assert big.status_code == 400
    assert "larger than the limit" in big.content.decode()
    assert not BulkJob.objects.exists()


def test_bad_file_fails_the_job_with_one_sentence(signed_in: Any) -> None:
    """A binary file gets a failed job with the reason on the page."""
    dana = signed_in("dana")
    job = _job(
        dana.post(
            f"{BASE}/import/", {"file": SimpleUploadedFile("x.csv", b"\x00\x01\x02PK\x03\x04")}
        )
    )
    workflow.job_prepare(job.pk)
    html = dana.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    assert 'data-testid="job-error"' in html
    assert "Failed" in html
    assert 'data-testid="cancel-button"' not in html


#
# Export, delete selected, registrations
#


def test_export_with_keys_downloads_and_is_audited(signed_in: Any, seed: Any) -> None:
    """Dana exports with keys; only she downloads it; the download is audited."""
    rid = f"x{uuid.uuid4().hex[:6]}"
    seed.enrollment(rid)
    dana = signed_in("dana")
    assert b'data-testid="include-keys"' in dana.get(f"{BASE}/export/").content
    job = _job(dana.post(f"{BASE}/export/", {"include_keys": "on"}))
    assert dana.get(f"{BASE}/jobs/{job.pk}/download/").status_code == 404  # not done yet
    workflow.job_prepare(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert b'data-testid="download-export"' in dana.get(f"{BASE}/jobs/{job.pk}/").content
    response = dana.get(f"{BASE}/jobs/{job.pk}/download/")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    mine = next(r for r in rows if r["registrationId"] == rid)
    assert mine["symmetricKeyPrimary"]
    assert AuditEvent.objects.filter(
        action=AuditAction.EXPORT, target_id=str(job.pk), message__contains="with keys"
    ).exists()
    assert signed_in("ada").get(f"{BASE}/jobs/{job.pk}/download/").status_code == 403


def test_delete_selected_confirms_then_deletes(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """A POSTed list shows a confirmation; confirming deletes exactly those enrollments."""
    p = f"d{uuid.uuid4().hex[:6]}"
    ids = [seed.enrollment(f"{p}-{i}").registration_id for i in range(3)]
    keep = seed.enrollment(f"{p}-keep").registration_id
    dana = signed_in("dana")
    first = dana.post(
        f"{BASE}/delete-selected/",
        {"selected": [f"{ids[0]}|etag1", ids[1]], "registration_ids": ids[2]},
    )
    assert first.status_code == 200
    html = first.content.decode()
    assert all(i in html for i in ids)
    assert keep not in html
    assert 'data-testid="confirm-delete-button"' in html
    assert not BulkJob.objects.exists()
    job = _job(dana.post(f"{BASE}/delete-selected/", {"registration_ids": ids, "confirm": "yes"}))
    assert job.kind == JobKind.DELETE_SELECTED
    assert job.total_rows == 0
    workflow.job_prepare(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_done) == (JobState.COMPLETED, 3)
    for rid in ids:
        with pytest.raises(DpsNotFound):
            owner_client.enrollment_get(rid)
    assert owner_client.enrollment_get(keep)
    nothing = dana.post(f"{BASE}/delete-selected/", {"confirm": "yes"})
    assert nothing.status_code == 400
    assert "Select at least one" in nothing.content.decode()


def test_group_registrations_delete_lists_then_waits_for_confirmation(
    signed_in: Any, seed: Any
) -> None:
    """Deleting a group's registration records lists them first and waits for the operator."""
    group = seed.group(f"g{uuid.uuid4().hex[:6]}").enrollment_group_id
    for i in range(2):
        seed.registration(f"{group}-dev{i}", group)
    dana = signed_in("dana")
    page = dana.get(f"{BASE}/groups/{group}/delete-registrations/")
    assert b'data-testid="list-registrations-button"' in page.content
    job = _job(dana.post(f"{BASE}/groups/{group}/delete-registrations/"))
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert (job.state, job.count_delete) == (JobState.AWAITING_CONFIRMATION, 2), job.error
    html = dana.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    assert "Apply 2 changes" in html


#
# Resume after sign-in
#


def test_sign_in_resumes_jobs_paused_for_sign_in(
    signed_in: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Signing in again moves the owner's "needs sign-in" jobs back to work."""
    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/export/", {}))
    BulkJob.objects.filter(pk=job.pk).update(
        state=JobState.PAUSED, pause_reason=PauseReason.NEEDS_SIGNIN, options={"phase": "run"}
    )
    from django.contrib.auth.signals import user_logged_in

    with django_capture_on_commit_callbacks() as queued:
        user_logged_in.send(sender=type(job.owner), request=None, user=job.owner)
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.RUNNING, "")
    assert len(queued) == 1


def test_a_database_error_in_prepare_fails_the_job_and_the_sweep_leaves_it(
    signed_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error while validating (COPY refusing a row, say) fails the job with the
    reason on its page, rather than leaving it to the sweep to requeue every few minutes;
    the error's detail, which may quote the row, is not shown."""
    from datetime import timedelta

    from django.db import DataError
    from django.utils import timezone

    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/import/", {"file": _upload([f"create,x,symmetricKey,{KEY},,"])}))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise DataError(
            'invalid byte sequence for encoding "UTF8": 0x00\n'
            f'CONTEXT:  COPY enrollments_bulkrow, line 1: "{job.pk}\tsecret-key-{KEY}"'
        )

    monkeypatch.setattr(workflow, "ingest_file", refuse)
    workflow.job_prepare(job.pk)  # does not raise
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.error == (
        "The database refused the job's data (DataError: invalid byte sequence for encoding "
        '"UTF8": 0x00); the job is stopped. Check the file, or ask an administrator to look '
        "at the worker log."
    )
    html = dana.get(f"{BASE}/jobs/{job.pk}/").content.decode()
    assert 'data-testid="job-error"' in html
    assert "invalid byte sequence" in html
    assert "secret-key" not in html
    assert not AuditEvent.objects.filter(message__contains="secret-key").exists()
    BulkJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job.pk not in workflow.jobs_sweep(stale_seconds=1)
    job.refresh_from_db()
    assert job.state == JobState.FAILED


def test_a_row_copy_refuses_fails_the_job_with_postgresql_s_reason(
    signed_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real error path: PostgreSQL's COPY refuses a NUL byte that got past the checks."""
    from django.db import connection

    from enrollments.bulk import ingest

    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's (DATABASE_URL is not PostgreSQL)")
    real = ingest.copy_line
    monkeypatch.setattr(ingest, "copy_line", lambda fmt, row: real(fmt, row).replace("x", "\0"))
    dana = signed_in("dana")
    job = _job(dana.post(f"{BASE}/import/", {"file": _upload([f"create,x,symmetricKey,{KEY},,"])}))
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.error.startswith(
        "The database refused the job's data (DataError: invalid byte sequence for encoding "
        '"UTF8": 0x00)'
    )


def test_an_oversized_upload_is_refused_while_it_streams(
    signed_in: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit stops the upload at the first chunk past it: no temporary file of the whole
    size is written, and the form names the limit."""
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    settings.BULK_UPLOAD_MAX_BYTES = 100_000
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000  # to disk from the first byte, as a big file
    stored: list[int] = []
    real = TemporaryFileUploadHandler.receive_data_chunk

    def spy(self: Any, raw_data: bytes, start: int) -> Any:
        stored.append(len(raw_data))
        return real(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", spy)
    dana = signed_in("dana")
    line = f"create,dev-1,symmetricKey,{KEY},enabled,"
    big = _upload([line] * 100_000)  # about 6 MB
    response = dana.post(f"{BASE}/import/", {"file": big})
    assert response.status_code == 400
    html = response.content.decode()
    assert "The file is larger than the limit of 100,000 bytes; split it." in html
    assert 0 < sum(stored) <= 100_000
    assert not BulkJob.objects.exists()
    # Under the limit the same form takes the file.
    ok = dana.post(f"{BASE}/import/", {"file": _upload([line])})
    assert ok.status_code == 302
