"""What each kind of bulk job needs of its owner's role on the DPS instance.

Checked when a job is created, when it is confirmed, and again by the worker before each step:
a role can change while a job waits. What a job needs depends on its kind and on the kind of
record it acts on: a status change or deletion of enrollment groups ("select all N matching"
on the groups list) names ``record_kind`` = ``"group"`` in its options; every other job acts
on individual enrollments (a registration-deletion job on a group's registration records).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied

from enrollments.models import BulkJob, JobKind

ENROLLMENT = "enrollment"
GROUP = "group"
REGISTRATION = "registration"

#: What running a job of each (job kind, record kind) takes.
REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    (JobKind.IMPORT, ENROLLMENT): ("enrollments.read", "enrollments.write"),
    (JobKind.EXPORT, ENROLLMENT): ("enrollments.read",),
    (JobKind.DELETE_SELECTED, ENROLLMENT): ("enrollments.delete",),
    (JobKind.DELETE_REGISTRATIONS, REGISTRATION): ("registrations.read", "registrations.delete"),
    (JobKind.SET_STATUS, ENROLLMENT): ("enrollments.read", "enrollments.write"),
    (JobKind.DELETE_SELECTED, GROUP): ("enrollmentgroups.read", "enrollmentgroups.delete"),
    (JobKind.SET_STATUS, GROUP): ("enrollmentgroups.read", "enrollmentgroups.write"),
}
#: What seeing a job (list, detail, progress, report, download) takes: reading what it touched.
#: A registration-deletion job lists registration records, so enrollments.read is not enough.
VIEW_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    (JobKind.IMPORT, ENROLLMENT): ("enrollments.read",),
    (JobKind.EXPORT, ENROLLMENT): ("enrollments.read",),
    (JobKind.DELETE_SELECTED, ENROLLMENT): ("enrollments.read",),
    (JobKind.DELETE_REGISTRATIONS, REGISTRATION): ("registrations.read",),
    (JobKind.SET_STATUS, ENROLLMENT): ("enrollments.read",),
    (JobKind.DELETE_SELECTED, GROUP): ("enrollmentgroups.read",),
    (JobKind.SET_STATUS, GROUP): ("enrollmentgroups.read",),
}
DELETE_CAPABILITY = "enrollments.delete"
REVEAL_CAPABILITY = "attestation.reveal"


def record_kind_of(job_kind: str, options: dict[str, Any] | None = None) -> str:
    """Return the kind of record a job of ``job_kind`` with ``options`` acts on."""
    if job_kind == JobKind.DELETE_REGISTRATIONS:
        return REGISTRATION
    return str((options or {}).get("record_kind") or ENROLLMENT)


def job_record_kind(job: BulkJob) -> str:
    """Return the kind of record ``job`` acts on."""
    return record_kind_of(job.kind, job.options)


def kind_require(
    job_kind: str,
    caps: Iterable[str],
    *,
    include_keys: bool = False,
    record_kind: str = ENROLLMENT,
) -> None:
    """Raise PermissionDenied unless ``caps`` allow a job of ``job_kind`` on ``record_kind``.

    ``include_keys``: the job writes keys too (an export with keys).
    """
    if job_kind == JobKind.DELETE_REGISTRATIONS:
        record_kind = REGISTRATION
    needs = REQUIRED.get((job_kind, record_kind))
    if needs is None:
        raise PermissionDenied(f"No {job_kind} job acts on records of kind {record_kind}.")
    have = set(caps)
    missing = [c for c in needs if c not in have]
    if include_keys and REVEAL_CAPABILITY not in have:
        missing.append(REVEAL_CAPABILITY)
    if missing:
        raise PermissionDenied("Your role on this DPS instance lacks: " + ", ".join(missing) + ".")


def job_required(job: BulkJob) -> tuple[str, ...]:
    """Return the capabilities running ``job`` takes: an import that deletes needs delete too."""
    needs = REQUIRED[(job.kind, job_record_kind(job))]
    if job.kind == JobKind.IMPORT and job.count_delete:
        needs = (*needs, DELETE_CAPABILITY)
    return needs


def job_missing(job: BulkJob, caps: Iterable[str]) -> list[str]:
    """Return the capabilities ``job`` needs to run that ``caps`` lack, in a stable order."""
    have = {str(c) for c in caps}
    return [c for c in job_required(job) if c not in have]


def job_visible_kinds(caps: Iterable[str]) -> list[tuple[str, str]]:
    """Return the (job kind, record kind) pairs whose jobs a holder of ``caps`` may see."""
    have = {str(c) for c in caps}
    return [pair for pair, needs in VIEW_REQUIRED.items() if all(c in have for c in needs)]


def job_view_required(job: BulkJob) -> tuple[str, ...]:
    """Return the capabilities seeing ``job`` takes."""
    return VIEW_REQUIRED[(job.kind, job_record_kind(job))]


def job_require(job: BulkJob, caps: Iterable[str]) -> None:
    """Raise PermissionDenied unless ``caps`` allow running ``job`` as previewed."""
    missing = job_missing(job, caps)
    if missing == [DELETE_CAPABILITY]:
        raise PermissionDenied(
            f"This file deletes {job.count_delete:,} enrollment"
            f"{'s' if job.count_delete != 1 else ''}, and your role on this DPS instance "
            f"lacks {DELETE_CAPABILITY}."
        )
    if missing:
        raise PermissionDenied("Your role on this DPS instance lacks: " + ", ".join(missing) + ".")
