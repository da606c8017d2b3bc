"""The hash chain over audit rows: canonical form, keyed hashing and verification.

A row's ``hash`` is HMAC-SHA256, under the key its ``key_id`` names (audit.keys), of its
canonical content including ``prev_hash`` and ``key_id``: without the key nobody can write a
row, a checkpoint or a chain head that verifies. Rows written before the chain was keyed have
an empty ``key_id`` and keep their plain SHA-256 (see audit.verification for where those are
still accepted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.models import AuditEvent

GENESIS_HASH = "0" * 64

# Everything that describes the event; ``id`` and ``actor`` (a mutable foreign key) are not.
HASHED_FIELDS = (
    "time",
    "actor_oid",
    "actor_upn",
    "actor_name",
    "client_ip",
    "request_id",
    "task_id",
    "dps_instance",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "dps_status",
    "dps_error_code",
    "tracking_id",
    "before",
    "after",
    "message",
    "prev_hash",
)


def canonical_json(value: Any) -> str:
    """Serialise JSON-like data the same way on every database and Python run."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class UnknownAuditKey(KeyError):
    """A row names a key id that AUDIT_HMAC_KEYS does not (or no longer) list."""


def event_payload(event: AuditEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {name: getattr(event, name) for name in HASHED_FIELDS}
    # Microsecond precision and UTC: what both PostgreSQL and SQLite give back.
    payload["time"] = event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload["client_ip"] = event.client_ip or ""
    key_id = getattr(event, "key_id", "")
    if key_id:
        # Keyed rows bind their key id too; unkeyed rows keep their pre-keying payload.
        payload["key_id"] = key_id
    return payload


def payload_hash(payload: dict[str, Any], key_id: str) -> str:
    """Return the row hash of a canonical payload: HMAC under ``key_id``, SHA-256 without."""
    data = canonical_json(payload).encode("utf-8")
    if not key_id:
        return hashlib.sha256(data).hexdigest()
    from audit.keys import audit_key

    key = audit_key(key_id)
    if key is None:
        raise UnknownAuditKey(key_id)
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def event_hash(event: AuditEvent) -> str:
    """Return the event's hash: HMAC-SHA256 of its canonical content under its ``key_id``.

    Raises :class:`UnknownAuditKey` when the key id is not configured.
    """
    return payload_hash(event_payload(event), getattr(event, "key_id", ""))


def head_mac(last_hash: str, key_id: str) -> str:
    """Return the signature of a chain head pointing at ``last_hash``.

    Without it, whoever deletes the newest rows could move the head back to the row before
    them and the cut would look like the end of the log.
    """
    return payload_hash({"chain_head": last_hash}, key_id)


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def chain_verify(
    events: Iterable[AuditEvent], *, last_hash: str | None = None
) -> ChainBreak | None:
    """Walk events in id order; return the first broken link, or None if the chain holds.

    ``last_hash`` is the chain head read before the walk: the walk stops at the row that
    carries it (rows written since are for the next run) and reports a truncation if no
    row does.
    """
    expected_prev = GENESIS_HASH
    last_seen: AuditEvent | None = None
    if last_hash == GENESIS_HASH:
        return None
    for event in events:
        if event.prev_hash != expected_prev:
            return ChainBreak(event.pk, "prev_hash does not match the previous row's hash")
        if event_hash(event) != event.hash:
            return ChainBreak(event.pk, "the row's content does not match its hash")
        expected_prev = event.hash
        last_seen = event
        if last_hash is not None and event.hash == last_hash:
            return None
    if last_hash is not None:
        return ChainBreak(
            last_seen.pk if last_seen else 0,
            "rows after this one are missing (the chain head records a later hash)",
        )
    return None
