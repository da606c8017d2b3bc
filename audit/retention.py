"""The only deletion path of audit rows: drop the oldest prefix of the chain, then checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from audit.models import (
    AuditAction,
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
    AuditRetentionRun,
    AuditTargetType,
)
from audit.services import audit_record
from audit.throttle import audit_signin_failures_flush


@dataclass(frozen=True)
class RetentionResult:
    deleted: int
    first_kept_id: int | None
    continues_from: str
    checkpoint_id: int


def audit_retention_apply(*, older_than_days: int) -> RetentionResult:
    """Delete events older than ``older_than_days`` and append a checkpoint event.

    Only a prefix of the chain (in id order) is removed: everything before the oldest row
    whose time is within the window. The checkpoint carries ``continues_from``, the
    ``prev_hash`` of the first row kept, so ``audit_verify`` knows where the chain now
    starts; it is signed like every row (its HMAC covers ``continues_from``, the count and
    the last deleted id), so nobody without the key can write one that ``audit_verify``
    trusts. The run is recorded first: on PostgreSQL that record is what lets the DELETE
    through, for this transaction and below its cut only. Deletion and checkpoint share one
    transaction, and the chain head stays locked throughout so no writer slips in between.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    # Failed sign-ins still only counted become rows first (a quiet address has no other trigger).
    audit_signin_failures_flush()
    cutoff = timezone.now() - timedelta(days=older_than_days)
    with transaction.atomic():
        # Same lock order as audit_record: the head row first.
        AuditChainHead.objects.get_or_create(pk=1)
        AuditChainHead.objects.filter(pk=1).update(count=F("count"))
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        first_kept = (
            AuditEvent.objects.filter(time__gte=cutoff)
            .order_by("id")
            .values("id", "prev_hash")
            .first()
        )
        if first_kept is None:
            newest = AuditEvent.objects.aggregate(newest=Max("id"))["newest"] or 0
            delete_below = newest + 1
            continues_from = head.last_hash
        else:
            delete_below = first_kept["id"]
            continues_from = first_kept["prev_hash"]
        doomed = AuditEvent.objects.filter(id__lt=delete_below)
        last_deleted = doomed.aggregate(last=Max("id"))["last"]
        # The append-only trigger lets this transaction's DELETE through below the cut only.
        run = AuditRetentionRun.objects.create(delete_below_id=delete_below)
        deleted, _ = doomed.delete()
        checkpoint = audit_record(
            actor=None,
            action=AuditAction.CHECKPOINT,
            outcome=AuditOutcome.SUCCESS,
            target_type=AuditTargetType.AUDIT_LOG,
            target_id="retention",
            after={
                "older_than_days": older_than_days,
                "cutoff": cutoff.isoformat(),
                "deleted": deleted,
                "first_kept_id": first_kept["id"] if first_kept else None,
                "last_deleted_id": last_deleted,
                "continues_from": continues_from,
                "retention_run": run.pk,
            },
            message=f"retention removed {deleted} events older than {older_than_days} days",
        )
    return RetentionResult(
        deleted=deleted,
        first_kept_id=first_kept["id"] if first_kept else None,
        continues_from=continues_from,
        checkpoint_id=checkpoint.pk,
    )
