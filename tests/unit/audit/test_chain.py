"""The audit hash chain: canonical hashing and verification (no database)."""

from __future__ import annotations

import datetime as dt

from audit.chain import GENESIS_HASH, chain_verify, event_hash
from audit.models import AuditEvent


def _chain(n):
    events, prev = [], GENESIS_HASH
    for i in range(n):
        e = AuditEvent(
            pk=i + 1,
            time=dt.datetime(2026, 1, 1, 12, 0, i, 123456, tzinfo=dt.UTC),
            actor_oid="oid",
            action="signin",
            outcome="success",
            before={"b": 1, "a": [1, 2]},
            message=f"event {i}",
            prev_hash=prev,
        )
        e.hash = event_hash(e)
        prev = e.hash
        events.append(e)
    return events


def test_intact_chain_verifies():
    events = _chain(4)
    assert chain_verify(events, last_hash=events[-1].hash) is None


def test_hash_ignores_key_order_and_actor_fk():
    a, b = _chain(1)[0], _chain(1)[0]
    b.before = {"a": [1, 2], "b": 1}
    b.actor_id = 42  # the FK may be nulled when the account is deleted
    assert event_hash(a) == event_hash(b)


def test_edit_is_detected_at_that_row():
    events = _chain(4)
    events[2].message = "edited"
    broken = chain_verify(events)
    assert broken
    assert broken.event_id == 3
    assert "content" in broken.reason


def test_deletion_is_detected_at_the_next_row():
    events = _chain(4)
    del events[1]
    broken = chain_verify(events)
    assert broken
    assert broken.event_id == 3
    assert "prev_hash" in broken.reason


def test_truncation_is_detected_with_the_head():
    events = _chain(4)
    broken = chain_verify(events[:3], last_hash=events[3].hash)
    assert broken
    assert "missing" in broken.reason


def test_time_is_part_of_the_hash():
    a = _chain(1)[0]
    before = event_hash(a)
    a.time = a.time + dt.timedelta(microseconds=1)
    assert event_hash(a) != before
