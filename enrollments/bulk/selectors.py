"""Read-only queries of bulk jobs for the pages: lists, row tables, progress, the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from enrollments.csv.columns import COLUMNS, KEY_COLUMNS
from enrollments.csv.export import csv_line, enrollment_to_row
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowPlan, RowStatus

PROBLEM_STATUSES = (RowStatus.FAILED, RowStatus.CONFLICT, RowStatus.SKIPPED)
REPORT_COLUMNS = ("line", *COLUMNS, "plan", "outcome", "errorCode", "message")


def job_list(
    *,
    instance: Any,
    owner: Any | None,
    state: str = "",
    kinds: list[tuple[str, str]] | None = None,
) -> QuerySet[BulkJob]:
    """Return the jobs of ``instance``, newest first; only ``owner``'s unless None.

    ``kinds`` (when given) keeps only jobs of those (job kind, record kind) pairs: the ones
    the viewer may see. A job that names no record kind acts on individual enrollments.
    """
    qs = BulkJob.objects.filter(instance=instance).select_related("owner", "owner__entra_identity")
    if kinds is not None:
        qs = qs.filter(_kinds_q(kinds))
    if owner is not None:
        qs = qs.filter(owner=owner)
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-id")


def _kinds_q(kinds: list[tuple[str, str]]) -> Q:
    """Return the filter of jobs of any of the (job kind, record kind) ``kinds``."""
    unnamed = ~Q(options__has_key="record_kind")
    q = Q(pk__in=[])
    for job_kind, record_kind in kinds:
        named = Q(options__record_kind=record_kind)
        q |= Q(kind=job_kind) & (named | unnamed if record_kind != "group" else named)
    return q


def job_rows(
    job: BulkJob, *, plan: str = "", status: str = "", q: str = "", problems: bool = False
) -> QuerySet[BulkRow]:
    """Return a job's rows in file order, filtered as the row table asks."""
    qs = BulkRow.objects.filter(job=job)
    if plan:
        qs = qs.filter(plan=plan)
    if status:
        qs = qs.filter(status=status)
    if q:
        qs = qs.filter(reg_key__startswith=q.strip().lower())
    if problems:
        qs = qs.filter(Q(plan=RowPlan.INVALID) | Q(status__in=PROBLEM_STATUSES))
    return qs.order_by("line_no", "id").defer("payload")


@dataclass(frozen=True)
class Progress:
    """What the progress bar shows."""

    done: int
    total: int
    percent: int
    rate_per_minute: int | None
    seconds_left: int | None
    indeterminate: bool

    @property
    def time_left(self) -> str:
        if self.seconds_left is None:
            return ""
        minutes, seconds = divmod(self.seconds_left, 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"{hours} h {minutes} min"
        if minutes:
            return f"{minutes} min {seconds} s"
        return f"{seconds} s"


def job_progress(job: BulkJob) -> Progress:
    """Return the done/total, rate and time left of ``job``'s current phase."""
    working = job.state in (JobState.QUEUED, JobState.VALIDATING)
    total = job.progress_total
    done = min(job.progress_done, total) if total else job.progress_done
    if job.kind == JobKind.EXPORT and job.state == JobState.RUNNING:
        total = 0  # DPS does not say how many enrollments there are
    if job.state in (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS) and not total:
        return Progress(done, done, 100, None, None, False)
    percent = int(done * 100 / total) if total else 0
    rate = seconds_left = None
    if job.run_started_at and done and job.state == JobState.RUNNING:
        elapsed = max((timezone.now() - job.run_started_at).total_seconds(), 1.0)
        per_second = done / elapsed
        rate = int(per_second * 60)
        if total and per_second > 0:
            seconds_left = int((total - done) / per_second)
    return Progress(
        done=done,
        total=total,
        percent=percent,
        rate_per_minute=rate,
        seconds_left=seconds_left,
        indeterminate=working or (job.state == JobState.RUNNING and not total),
    )


def row_errors(row: BulkRow) -> list[dict[str, str]]:
    """Return a row's validation errors as ``[{"column", "message"}]``."""
    if not row.errors:
        return []
    try:
        return list(json.loads(row.errors))
    except ValueError:
        return [{"column": "", "message": row.errors}]


def row_diff(row: BulkRow) -> list[tuple[str, str, str]]:
    """Return an update row's ``(column, DPS now, the file)`` triples."""
    if not row.diff:
        return []
    try:
        data = json.loads(row.diff)
    except ValueError:
        return []
    return [(column, pair[0], pair[1]) for column, pair in sorted(data.items())]


def job_report_lines(job: BulkJob) -> Iterator[str]:
    """Yield the result report: each input row, its plan and outcome, and why it failed.

    Keys are not repeated: the report is a record of what happened, not a copy of the secrets.
    """
    yield csv_line(REPORT_COLUMNS)
    qs = BulkRow.objects.filter(job=job).order_by("line_no", "id")
    for row in qs.iterator(chunk_size=2000):
        try:
            payload = json.loads(row.payload) if row.payload else {}
        except ValueError:
            payload = {}
        if not payload:
            payload = {"registrationId": row.registration_id}
        cells = enrollment_to_row(payload, operation=row.operation)
        for column in KEY_COLUMNS:
            cells[column] = ""
        if not row.payload:
            cells["provisioningStatus"] = ""
        messages = [f"{e.get('column', '')}: {e.get('message', '')}" for e in row_errors(row)]
        if row.message:
            messages.append(row.message)
        outcome = "" if row.plan == RowPlan.INVALID else row.status
        if row.plan == RowPlan.UNCHANGED:
            outcome = "unchanged"
        yield csv_line(
            [
                str(row.line_no),
                *(cells[c] for c in COLUMNS),
                row.plan,
                outcome,
                row.error_code,
                " | ".join(messages),
            ]
        )
