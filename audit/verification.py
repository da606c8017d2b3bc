"""Walk the whole audit chain from its anchor and say what is wrong where.

The anchor is the genesis hash, or, after retention, the ``continues_from`` hash of the
newest checkpoint event (the ``prev_hash`` of the first row retention kept). A checkpoint is
trusted as the anchor only once its own HMAC verifies: a checkpoint forged without the key
(unsigned, signed with another key, or naming an unknown key id) is reported as the break,
so a prefix cut behind it cannot pass. The walk then checks every row's link and HMAC, and
finally the signed chain head, which catches the newest rows being cut off.

Rows written before the chain was keyed (empty ``key_id``, plain SHA-256) are accepted only as
a prefix sealed by a keyed row (the ``chain_keyed`` event of migration 0003): an unkeyed row
after a keyed one, or unkeyed rows with no keyed row after them, are what someone without the
key would write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from audit.chain import GENESIS_HASH, UnknownAuditKey, event_hash, head_mac
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


def _hash_matches(event: AuditEvent) -> bool | None:
    """Return whether the row's hash verifies; None when its key id is not configured."""
    try:
        return event_hash(event) == event.hash
    except UnknownAuditKey:
        return None


def _unknown_key(event: AuditEvent, checked: int, anchor: str) -> VerifyResult:
    return VerifyResult(
        checked,
        anchor,
        event.pk,
        "unknown key",
        f"event {event.pk} is signed with key id {event.key_id!r}, which AUDIT_HMAC_KEYS does "
        "not list: add the key back to verify it, or the row was forged",
    )


def _anchor() -> tuple[str, VerifyResult | None]:
    """Return the hash the oldest remaining row must continue from, or why it is not trusted."""
    checkpoint = AuditEvent.objects.filter(action=AuditAction.CHECKPOINT).order_by("-id").first()
    if checkpoint is None:
        return GENESIS_HASH, None
    after = checkpoint.after if isinstance(checkpoint.after, dict) else {}
    anchor = str(after.get("continues_from") or GENESIS_HASH)
    if checkpoint.key_id:
        matches = _hash_matches(checkpoint)
        if matches is None:
            return anchor, VerifyResult(
                0,
                anchor,
                checkpoint.pk,
                "checkpoint",
                f"checkpoint {checkpoint.pk} is signed with key id {checkpoint.key_id!r}, which "
                "AUDIT_HMAC_KEYS does not list: add the key back to verify it, or it was forged",
            )
        if not matches:
            return anchor, VerifyResult(
                0,
                anchor,
                checkpoint.pk,
                "checkpoint",
                f"the signature of checkpoint {checkpoint.pk} does not verify with key "
                f"{checkpoint.key_id!r}: it was forged or edited, so the rows it claims "
                "retention removed were cut without it",
            )
    elif AuditEvent.objects.filter(id__lt=checkpoint.pk).exclude(key_id="").exists():
        return anchor, VerifyResult(
            0,
            anchor,
            checkpoint.pk,
            "checkpoint",
            f"checkpoint {checkpoint.pk} is unsigned but follows keyed rows: it was forged "
            "without the key, so the rows it claims retention removed were cut without it",
        )
    return anchor, None


def chain_anchor() -> str:
    """Return the hash the oldest remaining row must continue from (trusted or not)."""
    return _anchor()[0]


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
    """Check the anchor, every row's link and HMAC, then the signed head; stop at the first break."""
    anchor, untrusted = _anchor()
    if untrusted is not None:
        return untrusted
    expected_prev = anchor
    previous: AuditEvent | None = None
    checked = 0
    keyed_seen = False
    for event in _events():
        if event.prev_hash != expected_prev:
            kind, reason = _classify_link(event, previous)
            return VerifyResult(checked, anchor, event.pk, kind, reason)
        if not event.key_id and keyed_seen:
            return VerifyResult(
                checked,
                anchor,
                event.pk,
                "unkeyed",
                f"event {event.pk} has no HMAC but follows keyed rows: it was written "
                "without the key",
            )
        matches = _hash_matches(event)
        if matches is None:
            return _unknown_key(event, checked, anchor)
        if not matches:
            return VerifyResult(
                checked,
                anchor,
                event.pk,
                "edited",
                f"the content of event {event.pk} does not match its hash: the row was edited "
                "(or written without the key)",
            )
        keyed_seen = keyed_seen or bool(event.key_id)
        expected_prev = event.hash
        previous = event
        checked += 1
    if previous is not None and not keyed_seen:
        return VerifyResult(
            checked,
            anchor,
            previous.pk,
            "unkeyed",
            f"events up to {previous.pk} have no HMAC and no keyed row seals them: unkeyed "
            "rows are accepted only before the chain_keyed event (run migrate, which seals them)",
        )
    return _verify_head(checked, anchor, expected_prev, previous)


def _verify_head(
    checked: int, anchor: str, expected_prev: str, previous: AuditEvent | None
) -> VerifyResult:
    # The head is read after the walk: a row written meanwhile is then either walked or newer.
    head = AuditChainHead.objects.filter(pk=1).first()
    last_id = previous.pk if previous else 0
    if head is None:
        if previous is None:
            return VerifyResult(checked, anchor)
        return VerifyResult(
            checked, anchor, last_id, "head", "the chain head is missing: it was deleted"
        )
    if head.key_id or previous is not None:
        try:
            signed = bool(head.key_id) and head_mac(head.last_hash, head.key_id) == head.mac
        except UnknownAuditKey:
            signed = False
        if not signed:
            return VerifyResult(
                checked,
                anchor,
                last_id,
                "head",
                "the chain head's signature does not verify: it was moved without the key "
                f"(rows after event {last_id} may have been deleted)",
            )
    if head.last_hash == expected_prev:
        return VerifyResult(checked, anchor)
    if AuditEvent.objects.filter(hash=head.last_hash, id__gt=last_id).exists():
        return VerifyResult(checked, anchor)  # written after the walk passed
    appended = AuditEvent.objects.filter(prev_hash=head.last_hash).order_by("id").first()
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
