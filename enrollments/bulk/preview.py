"""The dry run: compare each valid row with what DPS holds now and plan it.

Small files are compared with one GET per row; larger ones with the enrollment query, page by
page (one operation per page of up to 1,000), looking up each page's ids among the job's rows,
so memory stays flat. Nothing is written to DPS here. A job deleting a group's registrations has
no file: its preview lists them (:func:`registrations_list`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count

from enrollments.bulk.calls import paced, paced_pages
from enrollments.bulk.store import (
    PLAN_FIELDS,
    RowWriter,
    delete_row,
    rows_analyze,
    rows_plan_save,
)
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
    if current is None:
        _plan_absent(row, payload)
        return
    row.etag = str(current.get("etag") or "")
    given_etag = payload.get("etag")
    if given_etag and given_etag != row.etag:
        _error(
            row,
            "etag",
            "The enrollment changed in DPS since this file was exported (its etag differs); "
            "export again or clear the etag cell to overwrite.",
        )
    elif row.operation == "create":
        _error(row, "registrationId", "This enrollment already exists (the operation is create).")
    elif row.operation == "delete":
        row.plan = RowPlan.DELETE
        row.payload = _dumps(
            {
                "registrationId": current.get("registrationId") or row.registration_id,
                "attestation": {"type": (current.get("attestation") or {}).get("type") or "none"},
            }
        )
    else:
        _plan_change(row, payload, current, can_reveal=can_reveal, read_keys=read_keys)


def _plan_absent(row: BulkRow, payload: dict[str, Any]) -> None:
    """Plan a row whose enrollment DPS does not hold."""
    if row.operation == "update":
        _error(row, "registrationId", "No such enrollment in DPS, so it cannot be updated.")
    elif row.operation == "delete":
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


def _plan_change(
    row: BulkRow,
    payload: dict[str, Any],
    current: dict[str, Any],
    *,
    can_reveal: bool,
    read_keys: Callable[[str], dict[str, Any]] | None,
) -> None:
    """Plan an upsert or update of an enrollment DPS holds: unchanged, update, or why not."""
    diff = _diff(row, payload, current, read_keys=read_keys if can_reveal else None)
    if not diff:
        row.plan = RowPlan.UNCHANGED
        return
    blocker = _update_blocker(payload, current, can_reveal=can_reveal)
    if blocker is not None:
        _error(row, *blocker)
        return
    row.plan = RowPlan.UPDATE
    row.diff = _dumps(diff)


def _diff(
    row: BulkRow,
    payload: dict[str, Any],
    current: dict[str, Any],
    *,
    read_keys: Callable[[str], dict[str, Any]] | None,
) -> dict[str, Any]:
    """Return what the row changes, keys hidden; the current keys are read only when given.

    Keys in the file are compared with DPS's only if the role may read them (``read_keys``);
    otherwise a change of keys is shown as one that cannot be checked.
    """
    desired_att = payload.get("attestation") or {}
    desired_keys = desired_att.get("symmetricKey") or {}
    same_kind = desired_att.get("type") == (current.get("attestation") or {}).get("type")
    current_row = enrollment_to_row(current)
    compare_keys = bool(desired_keys) and same_kind and desired_att.get("type") == "symmetricKey"
    if compare_keys and read_keys is not None:
        current_row = enrollment_to_row(current, keys=read_keys(row.registration_id))
    elif compare_keys:
        current_row["symmetricKeyPrimary"] = "(not readable)"
        compare_keys = False
    diff = row_diff(current_row, enrollment_to_row(payload), compare_keys=compare_keys)
    if desired_keys and not compare_keys and same_kind:
        diff["symmetricKeys"] = ["(not readable)", "(given in the file)"]
    for column in _KEY_COLUMNS & diff.keys():
        diff[column] = ["(hidden)", "(changed)"]
    return diff


_KEY_COLUMNS = frozenset(("symmetricKeyPrimary", "symmetricKeySecondary"))


def _update_blocker(
    payload: dict[str, Any], current: dict[str, Any], *, can_reveal: bool
) -> tuple[str, str] | None:
    """Return ``(column, message)`` when a change cannot be sent as the file gives it."""
    desired_att = payload.get("attestation") or {}
    if desired_att.get("thumbprintOnly"):
        return (
            "x509CertificatePrimary",
            "DPS does not return certificates, so changing this X.509 enrollment needs its "
            "certificate in the file.",
        )
    keys_blank = desired_att.get("type") == "symmetricKey" and not desired_att.get("symmetricKey")
    same_kind = desired_att.get("type") == (current.get("attestation") or {}).get("type")
    if keys_blank and same_kind and not can_reveal:
        return (
            "symmetricKeyPrimary",
            "The keys are blank, so the update would make DPS generate new ones, and your role "
            "may not read the current keys to keep them. Give the keys, or ask for the "
            "attestation-mechanism permission.",
        )
    return None


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
    preview = _Preview(job, client, bucket, can_reveal, should_stop, heartbeat)
    pending = BulkRow.objects.filter(job=job, plan=RowPlan.PENDING)
    if pending.count() <= GET_THRESHOLD:
        if not preview.plan_by_get(list(pending.order_by("id"))):
            return
    elif preview.plan_by_query():
        preview.plan_missing()
    else:
        return
    plan_counts_store(job)


@dataclass
class _Preview:
    """One job's preview: how it reaches DPS, and when to stop."""

    job: BulkJob
    client: DpsApi
    bucket: TokenBucket
    can_reveal: bool
    should_stop: Callable[[], bool]
    heartbeat: Callable[[], None]

    def read_keys(self, registration_id: str) -> dict[str, Any]:
        mech = paced(
            self.bucket, lambda: self.client.enrollment_attestation_mechanism(registration_id)
        )
        return (mech.to_json().get("symmetricKey")) or {}

    def current(self, registration_id: str) -> dict[str, Any] | None:
        """Return the enrollment DPS holds under ``registration_id``, or None."""
        try:
            return paced(self.bucket, lambda: self.client.enrollment_get(registration_id)).to_json()
        except DpsNotFound:
            return None

    def plan(self, row: BulkRow, current: dict[str, Any] | None) -> None:
        reader = self.read_keys if self.can_reveal else None
        plan_row(row, current, can_reveal=self.can_reveal, read_keys=reader)

    def plan_by_get(self, rows: list[BulkRow]) -> bool:
        """Plan ``rows`` with one GET each; False if stopped first."""
        for row in rows:
            if self.should_stop():
                return False
            self.plan(row, self.current(row.registration_id))
            row.save(update_fields=list(PLAN_FIELDS))
            self.heartbeat()
        return True

    def plan_by_query(self) -> bool:
        """Plan the rows whose enrollment the query returns, page by page; False if stopped."""
        if self.should_stop():
            return False
        pages = paced_pages(
            self.bucket,
            lambda c: self.client.enrollment_query(page_size=QUERY_PAGE, continuation=c),
        )
        for page in pages:
            by_key = {e.registration_id.lower(): e.to_json() for e in page.items}
            if by_key:
                rows = list(
                    BulkRow.objects.filter(
                        job=self.job, plan=RowPlan.PENDING, reg_key__in=list(by_key)
                    )
                )
                for row in rows:
                    self.plan(row, by_key[row.reg_key])
                with transaction.atomic():
                    rows_plan_save(rows)
            self.heartbeat()
            if page.has_more and self.should_stop():  # checked before each next page
                return False
        return True

    def plan_missing(self) -> None:
        """Plan the rows the query did not return: DPS does not hold their enrollments.

        Keyset order: starting each batch after the last one's id keeps PostgreSQL from
        walking the rows already planned again (which made this loop quadratic at 100,000).
        """
        last = 0
        while rows := list(
            BulkRow.objects.filter(job=self.job, plan=RowPlan.PENDING, id__gt=last).order_by("id")[
                :BATCH
            ]
        ):
            last = rows[-1].id
            for row in rows:
                self.plan(row, None)
            with transaction.atomic():
                rows_plan_save(rows)


def registrations_list(job: BulkJob, client: DpsApi, bucket: TokenBucket) -> None:
    """Store a row per registration of the job's group (the preview of a deletion of them)."""
    group_id = job.options["group_id"]
    BulkRow.objects.filter(job=job).delete()
    writer = RowWriter()
    line_no = 0
    pages = paced_pages(
        bucket,
        lambda c: client.registration_query_for_group(group_id, page_size=1000, continuation=c),
    )
    for page in pages:
        for reg in page.items:
            line_no += 1
            writer.add(delete_row(job.pk, line_no, reg.registration_id or "", reg.etag or ""))
    writer.flush()
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
