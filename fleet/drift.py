"""Judge what a pass found changed, new or gone: the portal's own write, or drift.

Drift ("changed outside the portal") is recorded as exactly one audit event per change, with
the index row before and after, and marked on the row (``drift_at``) for the pages. It is
judged at the end of the pass (fleet/sync.py), inside the finishing transaction, so the
event and the cleared mark commit together: a finish that is killed and run again records
nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from fleet import seen
from fleet.extract import dps_time, row_snapshot
from fleet.journal import KEEP, portal_made, prune, writes_of
from fleet.models import IndexedRecord, RecordKind, SyncState

#: The audit action of a change made outside the portal.
DRIFT_ACTION = AuditAction.CHANGED_OUTSIDE_PORTAL
_TARGET = {RecordKind.ENROLLMENT: "enrollment", RecordKind.GROUP: "enrollment_group"}


def snapshot(row: IndexedRecord | None) -> dict[str, Any] | None:
    """Return the JSON of an index row for before/after (None when there was no row)."""
    return row_snapshot(row)


def _event(instance: Any, state: SyncState, row: IndexedRecord, what: str, **change: Any) -> None:
    audit_record(
        actor=None,
        actor_name=f"Fleet index sync ({state.identity or 'app'})",
        action=DRIFT_ACTION,
        outcome=AuditOutcome.SUCCESS,
        target_type=_TARGET.get(RecordKind(row.kind), row.kind),
        target_id=row.record_id,
        dps_instance=instance.name,
        message=f"Changed outside the portal: {what} (found by sync pass {state.pass_id}).",
        **change,
    )


def judge_pass(instance: Any, state: SyncState, started: datetime) -> int:
    """Record drift for changed/new rows and vanished rows of this pass; return the events.

    Call inside the finishing transaction.
    """
    events = 0
    now = timezone.now()
    for kind in (RecordKind.ENROLLMENT, RecordKind.GROUP):
        changed = list(
            IndexedRecord.objects.filter(instance=instance, kind=kind, drift_pending__isnull=False)
        )
        # Neither written nor listed by this pass, and not written by the portal since it
        # started: gone from DPS.
        gone = list(
            seen.unseen(instance, state.pass_id, kind).exclude(Q(portal_written_at__gte=started))
        )
        writes = writes_of(instance, kind, [r.key for r in changed + gone])
        for row in changed:
            pending = row.drift_pending or {}
            ours = portal_made(
                writes.get(row.key, []),
                etag=str(pending.get("etag") or ""),
                updated=dps_time(pending.get("updated")),
            )
            if not ours:
                before = pending.get("before")
                _event(
                    instance,
                    state,
                    row,
                    "created" if before is None else "changed",
                    before=before,
                    after=snapshot(row),
                )
                events += 1
            IndexedRecord.objects.filter(pk=row.pk).update(
                drift_pending=None, drift_at=row.drift_at if ours else now
            )
        for row in gone:
            if state.finished_at is not None and not portal_made(
                writes.get(row.key, []), vanished=True
            ):
                _event(instance, state, row, "deleted", before=snapshot(row), after=None)
                events += 1
            row.delete()
    return events


def prune_journal(started: datetime) -> int:
    """Forget portal writes no pass needs any more (finished well before this pass began)."""
    return prune(started - KEEP)
