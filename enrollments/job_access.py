"""Who may see a bulk job and download an export: the owner, or a portal admin; audited.

The views ask these functions and turn :class:`JobDenied` into the 403 page (with its
``denied`` audit event); the download itself is recorded here, where it is decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from authn.backends import PORTAL_ADMIN
from authn.permissions import Capability
from enrollments.bulk import permissions as bulk
from enrollments.bulk import retention
from enrollments.models import BulkJob, JobKind, JobState
from instances.models import DpsInstance


class JobDenied(PermissionDenied):
    """The user may not see or use this job; ``required`` names what was missing."""

    def __init__(self, reason: str, required: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.required = required


def is_portal_admin(user: Any) -> bool:
    return bool(user.has_perm(PORTAL_ADMIN))


def job_for_viewer(
    *, user: Any, instance: DpsInstance, job_id: int, capabilities: Iterable[str]
) -> BulkJob:
    """Return the job if it is on ``instance`` and ``user`` may see it.

    Raise Http404 for no such job here, :class:`JobDenied` for someone else's job (unless the
    user is a portal admin) or a kind of job the user's capabilities do not cover.
    """
    job = get_object_or_404(
        BulkJob.objects.select_related("owner", "instance"), pk=job_id, instance=instance
    )
    if job.owner_id != user.pk and not is_portal_admin(user):
        raise JobDenied(
            "This job belongs to someone else; only its owner and portal admins see it.",
            "job owner or Portal.Admin",
        )
    needs_caps = bulk.job_view_required(job)
    if not set(needs_caps) <= {str(c) for c in capabilities}:
        needs = ", ".join(needs_caps)
        raise JobDenied(
            f"Seeing a job of this kind ({job.get_kind_display()}) needs {needs}, "
            "which your role on this DPS instance lacks.",
            needs,
        )
    return job


def export_download_open(
    *, job: BulkJob, user: Any, capabilities: Iterable[str]
) -> IO[bytes] | None:
    """Open a finished export for ``user`` and record the download; None if the file is gone.

    Only the owner downloads an export, and one with keys only while the owner may still
    read keys (:class:`JobDenied` otherwise).
    """
    if job.owner_id != user.pk:
        raise JobDenied("Only the owner of an export downloads it.", "job owner")
    with_keys = bool(job.options.get("include_keys"))
    if with_keys and Capability.ATTESTATION_REVEAL.value not in set(capabilities):
        raise JobDenied(
            "This export holds keys, which your Azure role no longer lets you read.",
            Capability.ATTESTATION_REVEAL.value,
        )
    handle = retention.export_open(job, user)
    if handle is None:
        return None
    audit_record(
        actor=user,
        action=AuditAction.EXPORT,
        outcome=AuditOutcome.SUCCESS,
        target_type="bulk_job",
        target_id=str(job.pk),
        dps_instance=job.instance.name,
        message="export downloaded" + (" with keys" if with_keys else ""),
    )
    return handle


def export_downloadable(job: BulkJob) -> bool:
    return job.kind == JobKind.EXPORT and job.state == JobState.COMPLETED
