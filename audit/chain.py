"""The hash chain over audit rows: canonical form, hashing and verification."""

from __future__ import annotations

import hashlib
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


def event_payload(event: AuditEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {name: getattr(event, name) for name in HASHED_FIELDS}
    # Microsecond precision and UTC: what both PostgreSQL and SQLite give back.
    payload["time"] = event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload["client_ip"] = event.client_ip or ""
    return payload


def event_hash(event: AuditEvent) -> str:
    """Return the SHA-256 hex digest of the event's canonical content and ``prev_hash``."""
    return hashlib.sha256(canonical_json(event_payload(event)).encode("utf-8")).hexdigest()


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
