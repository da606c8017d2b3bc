"""The "changed outside the portal" events of one record, for its detail page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit.models import AuditAction, AuditEvent

#: The newest events a detail page shows (the audit log has the rest).
SHOWN = 10
# Bookkeeping of the index row: never what anybody changed.
_NOT_FIELDS = frozenset({"etag", "updated", "created"})


@dataclass(frozen=True)
class FieldChange:
    """One field of the record as the index held it before and as DPS had it after."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class DriftEvent:
    """One change made outside the portal: when, what, and the audit event that records it."""

    pk: int
    time: datetime
    what: str  # created / changed / deleted
    changes: list[FieldChange]


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    old, new = before or {}, after or {}
    names = sorted((set(old) | set(new)) - _NOT_FIELDS)
    return [FieldChange(n, old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)]


def drift_events(instance: Any, target_type: str, record_id: str) -> list[DriftEvent]:
    """Return the newest "changed outside the portal" events of a record, newest first.

    ``record_id`` is the id as DPS returned it (the pass records events under that spelling).
    """
    events = AuditEvent.objects.filter(
        action=AuditAction.CHANGED_OUTSIDE_PORTAL,
        dps_instance=instance.name,
        target_type=target_type,
        target_id=record_id,  # as DPS spells it, like the pass's events (indexed column)
    ).order_by("-time", "-pk")[:SHOWN]
    return [
        DriftEvent(
            pk=e.pk,
            time=e.time,
            what="created" if e.before is None else "deleted" if e.after is None else "changed",
            changes=_changes(e.before, e.after),
        )
        for e in events.only("pk", "time", "before", "after")
    ]
