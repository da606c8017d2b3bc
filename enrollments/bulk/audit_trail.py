"""A bulk job's entries in the audit log: one target type, the instance's name, the actor."""

from __future__ import annotations

from typing import Any

from audit.models import AuditOutcome, AuditTargetType
from audit.services import audit_record
from enrollments.models import BulkJob

#: The audit log's target type of a job (also of a refused creation, which has no job yet).
TARGET_TYPE = AuditTargetType.BULK_JOB.value


def job_audit(
    job: BulkJob,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    *,
    actor: Any = None,
    **kw: Any,
) -> None:
    """Record an event of ``job``; in its owner's name unless someone else (``actor``) acted."""
    audit_record(
        actor=job.owner if actor is None else actor,
        action=action,
        outcome=outcome,
        target_type=TARGET_TYPE,
        target_id=str(job.pk),
        dps_instance=job.instance.name,
        **kw,
    )
