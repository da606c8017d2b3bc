"""Walk the whole audit chain from its anchor and say what is wrong where.

The anchor is the genesis hash, or, after retention, the ``continues_from`` hash of the
newest checkpoint event (the ``prev_hash`` of the first row retention kept). The checkpoint
itself sits inside the chain, so it cannot be forged or dropped without a break either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from audit.chain import GENESIS_HASH, event_hash
from audit.models import AuditAction, AuditChainHead, AuditEvent

CHUNK_SIZE = 2000


@dataclass(frozen=True)
class VerifyResult:
    """What a walk found: ``broken_at`` is None when the chain holds."""

    checked: int
    anchor: str
    broken_at: int | None = None
    kind: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def chain_anchor() -> str:
    """Return the hash the oldest remaining row must continue from."""
    checkpoint = (
        AuditEvent.objects.filter(action=AuditAction.CHECKPOINT)
        .order_by("-id")
        .values_list("after", flat=True)
        .first()
    )
    if isinstance(checkpoint, dict) and checkpoint.get("continues_from"):
        return str(checkpoint["continues_from"])
    return GENESIS_HASH


def _events() -> Iterator[AuditEvent]:
    # A server-side cursor on PostgreSQL: memory stays flat however long the chain is.
    return AuditEvent.objects.order_by("id").iterator(chunk_size=CHUNK_SIZE)


def _classify_link(event: AuditEvent, previous: AuditEvent | None) -> tuple[str, str]:
    """Tell a deleted row from an inserted one at a prev_hash mismatch."""
    if previous is not None and previous.prev_hash == event.prev_hash:
        return (
            "inserted",
            f"event {previous.pk} claims the same predecessor as event {event.pk}: "
            f"event {previous.pk} was inserted",
        )
    if previous is not None and not AuditEvent.objects.filter(hash=event.prev_hash).exists():
        return (
            "deleted",
            f"the row event {event.pk} continues from is missing: rows between "
            f"{previous.pk} and {event.pk} were deleted",
        )
    if previous is None:
        return (
            "deleted",
            f"the oldest row ({event.pk}) does not continue from the anchor: older rows were "
            "deleted outside audit_retention",
        )
    return (
        "reordered",
        f"event {event.pk} continues from a row other than event {previous.pk}",
    )


def audit_chain_verify() -> VerifyResult:
    """Check every row's hash and link, then the chain head; stop at the first break."""
    anchor = chain_anchor()
    expected_prev = anchor
    previous: AuditEvent | None = None
    checked = 0
    for event in _events():
        if event.prev_hash != expected_prev:
            kind, reason = _classify_link(event, previous)
            return VerifyResult(checked, anchor, event.pk, kind, reason)
        if event_hash(event) != event.hash:
            return VerifyResult(
                checked,
                anchor,
                event.pk,
                "edited",
                f"the content of event {event.pk} does not match its hash: the row was edited",
            )
        expected_prev = event.hash
        previous = event
        checked += 1
    # The head is read after the walk: a row written meanwhile is then either walked or newer.
    head = AuditChainHead.objects.filter(pk=1).values_list("last_hash", flat=True).first()
    if head is None or head == expected_prev:
        return VerifyResult(checked, anchor)
    last_id = previous.pk if previous else 0
    if AuditEvent.objects.filter(hash=head, id__gt=last_id).exists():
        return VerifyResult(checked, anchor)  # written after the walk passed
    appended = AuditEvent.objects.filter(prev_hash=head).order_by("id").first()
    if appended is not None:
        return VerifyResult(
            checked,
            anchor,
            appended.pk,
            "inserted",
            f"event {appended.pk} was appended without going through the chain head",
        )
    return VerifyResult(
        checked,
        anchor,
        last_id,
        "deleted",
        f"the chain head records a later hash than event {last_id}: newer rows were deleted",
    )
