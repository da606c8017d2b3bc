"""The dry run: compare each valid row with what DPS holds now and plan it.

Small files are compared with one GET per row; larger ones with the enrollment query, page by
page (one operation per page of up to 1,000), looking up each page's ids among the job's rows,
so memory stays flat. Nothing is written to DPS here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Count

from enrollments.bulk.calls import paced
from enrollments.bulk.store import rows_analyze, rows_plan_save
from enrollments.csv.diff import row_diff
from enrollments.csv.export import enrollment_to_row
from enrollments.dps.exceptions import DpsNotFound
from enrollments.dps.types import DpsApi
from enrollments.models import BulkJob, BulkRow, RowPlan
from enrollments.ratelimit import TokenBucket

#: Up to this many rows to compare, one GET each is cheaper than reading every enrollment.
GET_THRESHOLD = 200
QUERY_PAGE = 1000
BATCH = 500

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _error(row: BulkRow, column: str, message: str) -> None:
    errors = json.loads(row.errors) if row.errors else []
    errors.append({"column": column, "message": message})
    row.errors = _dumps(errors)
    row.plan = RowPlan.INVALID


def plan_row(
    row: BulkRow,
    current: dict[str, Any] | None,
    *,
    can_reveal: bool,
    read_keys: Callable[[str], dict[str, Any]] | None,
) -> None:
    """Decide ``row.plan`` (and ``etag``, ``diff``) from the record DPS holds, or None."""
    payload = json.loads(row.payload)
    op = row.operation
    given_etag = payload.get("etag")
    if current is None:
        if op == "update":
            _error(row, "registrationId", "No such enrollment in DPS, so it cannot be updated.")
        elif op == "delete":
            row.plan = RowPlan.UNCHANGED
            row.diff = _dumps({"_note": "already absent"})
        elif (payload.get("attestation") or {}).get("thumbprintOnly"):
            _error(
                row,
                "x509CertificatePrimary",
                "A new X.509 enrollment needs its certificate, not only a thumbprint.",
            )
        else:
            row.plan = RowPlan.CREATE
        return
    etag = str(current.get("etag") or "")
    row.etag = etag
    if given_etag and given_etag != etag:
        _error(
            row,
            "etag",
            "The enrollment changed in DPS since this file was exported (its etag differs); "
            "export again or clear the etag cell to overwrite.",
        )
        return
    if op == "create":
        _error(row, "registrationId", "This enrollment already exists (the operation is create).")
        return
    if op == "delete":
        row.plan = RowPlan.DELETE
        row.payload = _dumps(
            {
                "registrationId": current.get("registrationId") or row.registration_id,
                "attestation": {"type": (current.get("attestation") or {}).get("type") or "none"},
            }
        )
        return
    desired_att = payload.get("attestation") or {}
    current_att = current.get("attestation") or {}
    desired_keys = desired_att.get("symmetricKey") or {}
    same_kind = desired_att.get("type") == current_att.get("type")
    compare_keys = False
    current_row = enrollment_to_row(current)
    if desired_att.get("type") == "symmetricKey" and same_kind and desired_keys:
        if can_reveal and read_keys is not None:
            keys = read_keys(row.registration_id)
            current_row = enrollment_to_row(current, keys=keys)
            compare_keys = True
        else:
            current_row["symmetricKeyPrimary"] = "(not readable)"
    desired_row = enrollment_to_row(payload)
    diff = row_diff(current_row, desired_row, compare_keys=compare_keys)
    if desired_keys and not compare_keys and same_kind:
        diff["symmetricKeys"] = ["(not readable)", "(given in the file)"]
    for column in ("symmetricKeyPrimary", "symmetricKeySecondary"):
        if column in diff:
            diff[column] = ["(hidden)", "(changed)"]
    if not diff:
        row.plan = RowPlan.UNCHANGED
        return
    if desired_att.get("thumbprintOnly"):
        _error(
            row,
            "x509CertificatePrimary",
            "DPS does not return certificates, so changing this X.509 enrollment needs its "
            "certificate in the file.",
        )
        return
    if (
        desired_att.get("type") == "symmetricKey"
        and not desired_keys
        and same_kind
        and not can_reveal
    ):
        _error(
            row,
            "symmetricKeyPrimary",
            "The keys are blank, so the update would make DPS generate new ones, and your role "
            "may not read the current keys to keep them. Give the keys, or ask for the "
            "attestation-mechanism permission.",
        )
        return
    row.plan = RowPlan.UPDATE
    row.diff = _dumps(diff)


def preview_job(
    job: BulkJob,
    client: DpsApi,
    bucket: TokenBucket,
    *,
    can_reveal: bool,
    should_stop: Callable[[], bool] = lambda: False,
    heartbeat: Callable[[], None] = lambda: None,
) -> None:
    """Plan every pending row of ``job`` against DPS, then store the counts on the job."""

    def read_keys(registration_id: str) -> dict[str, Any]:
        mech = paced(bucket, lambda: client.enrollment_attestation_mechanism(registration_id))
        return (mech.to_json().get("symmetricKey")) or {}

    pending = BulkRow.objects.filter(job=job, plan=RowPlan.PENDING)
    total = pending.count()
    reader = read_keys if can_reveal else None
    if total <= GET_THRESHOLD:
        for row in list(pending.order_by("id")):
            if should_stop():
                return
            try:
                current = paced(bucket, lambda r=row: client.enrollment_get(r.registration_id))
                current_json: dict[str, Any] | None = current.to_json()
            except DpsNotFound:
                current_json = None
            plan_row(row, current_json, can_reveal=can_reveal, read_keys=reader)
            row.save(update_fields=["plan", "etag", "diff", "errors", "payload"])
            heartbeat()
    else:
        continuation: str | None = None
        while True:
            if should_stop():
                return
            page = paced(
                bucket,
                lambda c=continuation: client.enrollment_query(
                    page_size=QUERY_PAGE, continuation=c
                ),
            )
            by_key = {e.registration_id.lower(): e.to_json() for e in page.items}
            if by_key:
                rows = list(
                    BulkRow.objects.filter(job=job, plan=RowPlan.PENDING, reg_key__in=list(by_key))
                )
                for row in rows:
                    plan_row(row, by_key[row.reg_key], can_reveal=can_reveal, read_keys=reader)
                with transaction.atomic():
                    rows_plan_save(rows)
            heartbeat()
            continuation = page.continuation_token
            if not continuation:
                break
        # Whatever the query did not return does not exist in DPS. Keyset order: starting
        # each batch after the last one's id keeps PostgreSQL from walking the rows already
        # planned again (which made this loop quadratic at 100,000 rows).
        last = 0
        while True:
            rows = list(
                BulkRow.objects.filter(job=job, plan=RowPlan.PENDING, id__gt=last).order_by("id")[
                    :BATCH
                ]
            )
            if not rows:
                break
            last = rows[-1].id
            for row in rows:
                plan_row(row, None, can_reveal=can_reveal, read_keys=reader)
            with transaction.atomic():
                rows_plan_save(rows)
    plan_counts_store(job)


def plan_counts_store(job: BulkJob) -> None:
    """Store the per-plan counts on the job row."""
    counts = dict(
        BulkRow.objects.filter(job=job).values_list("plan").annotate(n=Count("id")).order_by()
    )
    job.count_create = counts.get(RowPlan.CREATE, 0)
    job.count_update = counts.get(RowPlan.UPDATE, 0)
    job.count_unchanged = counts.get(RowPlan.UNCHANGED, 0)
    job.count_delete = counts.get(RowPlan.DELETE, 0)
    job.count_invalid = counts.get(RowPlan.INVALID, 0)
    job.total_rows = sum(counts.values())
    job.progress_total = job.count_create + job.count_update + job.count_delete
    # The plans just written change what the runner's claims select: fresh statistics.
    rows_analyze()
    job.save(
        update_fields=[
            "count_create",
            "count_update",
            "count_unchanged",
            "count_delete",
            "count_invalid",
            "total_rows",
            "progress_total",
        ]
    )
