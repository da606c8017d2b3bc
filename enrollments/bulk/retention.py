"""Keep secrets and files no longer than a job needs them.

* When a job ends (done, failed, cancelled) the key material in its rows' payloads is cleared:
  the run needed it, the report never shows it. What counts as a secret is what
  :func:`audit.redaction.is_sensitive_key` says of the attestation's fields (symmetric keys,
  and TPM endorsement and storage root keys: the portal shows any attestation material only
  to holders of ``attestation.reveal``); twin tags and properties are the operator's data and stay.
* Result files (exports) are deleted ``BULK_FILE_RETENTION_HOURS`` after the job ended, by a
  beat task; stray files in the bulk directory that no job refers to go after the same time.
* An export that holds keys is deleted as soon as it has been handed out once.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.redaction import is_sensitive_key
from enrollments.bulk.audit_trail import job_audit
from enrollments.bulk.files import bulk_dir
from enrollments.models import FINAL_STATES, BulkJob, BulkRow, JobKind

log = logging.getLogger(__name__)

BATCH = 5000
#: ``options["file_deleted"]`` values: why an export's file is gone.
DOWNLOADED = "downloaded"
EXPIRED = "expired"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _clean(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a row payload without key material: the attestation's sensitive values.

    Only the attestation is looked at: twin tags and properties are the operator's data
    (a tag named ``siteKey`` is not a credential) and the report shows them.
    """
    att = payload.get("attestation")
    if not isinstance(att, dict):
        return payload
    return {**payload, "attestation": _strip(att)}


def _strip(obj: Any) -> Any:
    """Return ``obj`` without the values stored under sensitive keys."""
    if isinstance(obj, dict):
        return {
            k: _strip(v)
            for k, v in obj.items()
            if not (is_sensitive_key(str(k)) and v not in (None, "", {}, []))
        }
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _payloads_save(rows: list[BulkRow]) -> None:
    """Write ``rows``' payloads back; one ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL.

    ``bulk_update``'s ``CASE WHEN`` per row made a 50,000-row scrub take 12 s (see
    store.rows_plan_save for the same finding on the preview).
    """
    if connection.vendor != "postgresql":
        BulkRow.objects.bulk_update(rows, ["payload"])
        return
    table = BulkRow._meta.db_table
    values = ", ".join(["(%s::bigint, %s)"] * len(rows))
    params: list[Any] = []
    for row in rows:
        params.extend((row.id, row.payload))
    # The table name is the model's, never input.
    sql = (
        f"UPDATE {table} AS t SET payload = v.payload FROM (VALUES {values}) "  # noqa: S608
        "AS v(id, payload) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rows_scrub(job: BulkJob) -> int:
    """Clear key material from ``job``'s row payloads; return how many rows changed.

    Only rows whose payload can hold a key are read (every key field name ends in ``Key``),
    in id order, a batch at a time, so a million-row job costs no more memory than a batch.
    """
    changed = 0
    last = 0
    while True:
        batch = list(
            BulkRow.objects.filter(job=job, id__gt=last, payload__contains='Key"')
            .order_by("id")
            .values_list("id", "payload")[:BATCH]
        )
        if not batch:
            break
        last = batch[-1][0]
        updates = []
        for row_id, payload in batch:
            try:
                data = json.loads(payload)
            except ValueError:
                updates.append(BulkRow(id=row_id, payload=""))
                continue
            clean = _clean(data) if isinstance(data, dict) else data
            if clean != data:
                updates.append(BulkRow(id=row_id, payload=_dumps(clean)))
        if updates:
            _payloads_save(updates)
            changed += len(updates)
    options = dict(
        BulkJob.objects.filter(pk=job.pk).values_list("options", flat=True).first() or {}
    )
    options["secrets_cleared"] = True
    BulkJob.objects.filter(pk=job.pk).update(options=options)
    job.options = {**job.options, "secrets_cleared": True}
    return changed


def job_inputs_discard(job: BulkJob) -> None:
    """Drop what a job that just ended kept of its input: the upload and the rows' keys."""
    # The upload may hold keys: keep it no longer than the job needs it.
    if job.source_path:
        Path(job.source_path).unlink(missing_ok=True)
    # So may the rows' payloads; the report never shows them. The job has ended whatever
    # happens here: a failure is logged and the beat task (files_expire) scrubs it later.
    try:
        rows_scrub(job)
    except Exception:  # retried by the beat task
        log.exception("could not clear the keys of job %s's rows; the beat task retries", job.pk)


def _retention() -> timedelta:
    return timedelta(hours=float(getattr(settings, "BULK_FILE_RETENTION_HOURS", 24)))


def _mark_gone(job: BulkJob, reason: str) -> None:
    options = {**job.options, "file_deleted": reason, "file_deleted_at": timezone.now().isoformat()}
    BulkJob.objects.filter(pk=job.pk).update(result_path="", options=options)
    job.result_path = ""
    job.options = options


def files_expire(*, now: datetime | None = None) -> list[int]:
    """Delete result files older than the retention time; return the ids of their jobs.

    Also scrubs the rows of ended jobs whose scrub did not happen (a crash right after the
    job ended), and deletes stray files of the bulk directory no job refers to.
    """
    now = now or timezone.now()
    cutoff = now - _retention()
    expired: list[int] = []
    for job in (
        BulkJob.objects.select_related("instance")
        .filter(finished_at__lte=cutoff)
        .exclude(result_path="")
    ):
        Path(job.result_path).unlink(missing_ok=True)
        _mark_gone(job, EXPIRED)
        job_audit(
            job,
            AuditAction.EXPORT,
            message=f"export file deleted {settings.BULK_FILE_RETENTION_HOURS} h after the job ended",
        )
        expired.append(job.pk)
    for job in BulkJob.objects.filter(state__in=FINAL_STATES).exclude(
        options__secrets_cleared=True
    ):
        rows_scrub(job)
    referenced = {
        p for pair in BulkJob.objects.values_list("source_path", "result_path") for p in pair if p
    }
    for path in bulk_dir().iterdir():
        try:
            if (
                path.is_file()
                and str(path) not in referenced
                and path.stat().st_mtime <= cutoff.timestamp()
            ):
                path.unlink(missing_ok=True)
                log.info("deleted stray bulk file %s", path.name)
        except OSError as exc:  # another process removed it first: nothing to do
            log.debug("could not delete %s: %s", path, exc)
    return expired


def export_open(job: BulkJob, actor: Any) -> IO[bytes] | None:
    """Open an export's file for its download; None if it is gone.

    An export with keys is handed out once: the file is unlinked once it is open (the open
    handle still streams it), under a row lock so two downloads at once cannot both get it.
    """
    if not job.options.get("include_keys"):
        if not job.result_path or not Path(job.result_path).exists():
            return None
        return Path(job.result_path).open("rb")
    with transaction.atomic():
        locked = BulkJob.objects.select_for_update().get(pk=job.pk)
        if not locked.result_path:
            job.options, job.result_path = locked.options, ""
            return None
        path = Path(locked.result_path)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            _mark_gone(locked, EXPIRED)
            job.options, job.result_path = locked.options, ""
            return None
        os.unlink(path)
        _mark_gone(locked, DOWNLOADED)
        job.options, job.result_path = locked.options, ""
        job_audit(
            job,
            AuditAction.EXPORT,
            actor=actor,
            message="export file with keys deleted after its first download",
        )
    return handle


def file_gone_reason(job: BulkJob) -> str:
    """Return why an export's file is no longer there, in one sentence for the page."""
    if job.kind != JobKind.EXPORT:
        return ""
    if job.options.get("file_deleted") == DOWNLOADED:
        return (
            "This export held keys, so it was deleted once downloaded. To get the enrollments "
            "again, start a new export."
        )
    hours = getattr(settings, "BULK_FILE_RETENTION_HOURS", 24)
    return (
        f"Export files are kept for {hours} hours after the job ends; this one has been "
        "deleted. To get the enrollments again, start a new export."
    )
