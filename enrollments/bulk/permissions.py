"""What each kind of bulk job needs of its owner's role on the DPS instance.

Checked when a job is created, when it is confirmed, and again by the worker before each step:
a role can change while a job waits.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied

from enrollments.models import BulkJob, JobKind

#: What running a job of each kind takes.
REQUIRED: dict[str, tuple[str, ...]] = {
    JobKind.IMPORT: ("enrollments.read", "enrollments.write"),
    JobKind.EXPORT: ("enrollments.read",),
    JobKind.DELETE_SELECTED: ("enrollments.delete",),
    JobKind.DELETE_REGISTRATIONS: ("registrations.read", "registrations.delete"),
    JobKind.SET_STATUS: ("enrollments.read", "enrollments.write"),
}
#: What seeing a job (list, detail, progress, report, download) takes: reading what it touched.
#: A registration-deletion job lists registration records, so enrollments.read is not enough.
VIEW_REQUIRED: dict[str, tuple[str, ...]] = {
    JobKind.IMPORT: ("enrollments.read",),
    JobKind.EXPORT: ("enrollments.read",),
    JobKind.DELETE_SELECTED: ("enrollments.read",),
    JobKind.DELETE_REGISTRATIONS: ("registrations.read",),
    JobKind.SET_STATUS: ("enrollments.read",),
}
DELETE_CAPABILITY = "enrollments.delete"
REVEAL_CAPABILITY = "attestation.reveal"


def kind_require(job_kind: str, caps: Iterable[str], *, include_keys: bool = False) -> None:
    """Raise PermissionDenied unless ``caps`` allow a job of ``job_kind`` (with keys, if asked)."""
    have = set(caps)
    missing = [c for c in REQUIRED[job_kind] if c not in have]
    if include_keys and REVEAL_CAPABILITY not in have:
        missing.append(REVEAL_CAPABILITY)
    if missing:
        raise PermissionDenied("Your role on this DPS instance lacks: " + ", ".join(missing) + ".")


def job_required(job: BulkJob) -> tuple[str, ...]:
    """Return the capabilities running ``job`` takes: an import that deletes needs delete too."""
    needs = REQUIRED[job.kind]
    if job.kind == JobKind.IMPORT and job.count_delete:
        needs = (*needs, DELETE_CAPABILITY)
    return needs


def job_missing(job: BulkJob, caps: Iterable[str]) -> list[str]:
    """Return the capabilities ``job`` needs to run that ``caps`` lack, in a stable order."""
    have = {str(c) for c in caps}
    return [c for c in job_required(job) if c not in have]


def job_visible_kinds(caps: Iterable[str]) -> list[str]:
    """Return the job kinds whose jobs a holder of ``caps`` may see."""
    have = {str(c) for c in caps}
    return [kind for kind, needs in VIEW_REQUIRED.items() if all(c in have for c in needs)]


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
