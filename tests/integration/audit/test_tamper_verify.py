"""audit_verify finds an edited, a deleted and an inserted row; retention keeps the chain valid."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.chain import GENESIS_HASH, event_hash
from audit.models import AuditAction, AuditChainHead, AuditEvent, AuditOutcome
from audit.verification import audit_chain_verify

pytestmark = pytest.mark.django_db


def as_dba() -> None:
    """Play a database administrator: the append-only trigger is off for this transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")


def verify_output() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def verify_error() -> str:
    with pytest.raises(CommandError) as info:
        call_command("audit_verify")
    return str(info.value)


@pytest.fixture
def chain(record: Any, admin: Any) -> list[AuditEvent]:
    return [
        record(actor=admin, dps_instance="dps-a", target_id=f"dev-{i}", after={"n": i})
        for i in range(6)
    ]


def test_intact_chain_passes(chain: list[AuditEvent]) -> None:
    assert "audit chain intact (6 events, from genesis)" in verify_output()


def test_edited_row_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[2].pk).update(after={"n": 99})
    assert f"broken at event {chain[2].pk} (edited)" in verify_error()


def test_edited_row_with_recomputed_hash_breaks_the_next_link(chain: list[AuditEvent]) -> None:
    as_dba()
    forged = AuditEvent.objects.get(pk=chain[2].pk)
    forged.outcome = AuditOutcome.DENIED
    forged.hash = event_hash(forged)
    AuditEvent.objects.filter(pk=forged.pk).update(outcome=forged.outcome, hash=forged.hash)
    message = verify_error()
    assert f"broken at event {chain[3].pk}" in message


def test_deleted_row_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[3].pk).delete()
    message = verify_error()
    assert f"broken at event {chain[4].pk} (deleted)" in message
    assert f"between {chain[2].pk} and {chain[4].pk}" in message


def test_deleted_oldest_row_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[0].pk).delete()
    assert f"broken at event {chain[1].pk} (deleted)" in verify_error()


def test_deleted_newest_row_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[5].pk).delete()
    assert f"broken at event {chain[4].pk} (deleted)" in verify_error()


def _forge_after(prev: AuditEvent, **fields: Any) -> AuditEvent:
    """Forge a row as someone holding the HMAC key would: only the links can give it away.

    (Forgers without the key are in test_keyed_chain.py.)
    """
    from audit.keys import audit_current_key

    forged = AuditEvent(
        key_id=audit_current_key()[0],
        time=prev.time,
        action=AuditAction.ENROLLMENT_DELETE,
        outcome=AuditOutcome.SUCCESS,
        actor_upn="innocent@contoso.example",
        prev_hash=prev.hash,
        **fields,
    )
    forged.hash = event_hash(forged)
    return forged


def test_inserted_row_in_the_middle_is_found(chain: list[AuditEvent]) -> None:
    """A well-formed row slipped into an id gap (rolled-back writes leave gaps) is named."""
    from django.db.models import F

    as_dba()
    gap = chain[3].pk
    AuditEvent.objects.filter(pk__gte=gap).update(id=F("id") + 1000)  # ids are not hashed
    forged = _forge_after(chain[2], id=gap)
    forged.save(force_insert=True)
    message = verify_error()
    assert f"broken at event {chain[3].pk + 1000} (inserted)" in message
    assert f"event {gap} was inserted" in message


def test_moved_row_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[3].pk).update(id=10_000)
    assert f"broken at event {chain[4].pk}" in verify_error()


def test_row_appended_without_the_head_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    forged = _forge_after(chain[5])
    forged.save(force_insert=True)
    assert f"broken at event {forged.pk} (inserted)" in verify_error()


def test_retention_keeps_the_chain_verifiable(
    record: Any, admin: Any, days_ago: Any, settings: Any
) -> None:
    old = [record(actor=admin, at=days_ago(100 - i), message=f"old {i}") for i in range(5)]
    recent = [record(actor=admin, at=days_ago(3 - i), message=f"new {i}") for i in range(3)]
    out = io.StringIO()
    call_command("audit_retention", "--older-than", "30", stdout=out)
    assert "deleted 5 audit events older than 30 days" in out.getvalue()
    remaining = list(AuditEvent.objects.order_by("id"))
    assert [e.pk for e in remaining[:3]] == [e.pk for e in recent]
    checkpoint = remaining[-1]
    assert (checkpoint.action, checkpoint.actor_id) == (AuditAction.CHECKPOINT, None)
    assert checkpoint.after["continues_from"] == old[-1].hash == recent[0].prev_hash
    assert checkpoint.after["deleted"] == 5
    assert "intact (4 events, from checkpoint" in verify_output()
    # The log keeps growing and verifying after the checkpoint.
    record(actor=admin)
    assert "intact (5 events" in verify_output()


def test_retention_default_age_comes_from_settings(
    record: Any, admin: Any, days_ago: Any, settings: Any
) -> None:
    settings.AUDIT_RETENTION_DAYS = 50
    record(actor=admin, at=days_ago(60))
    kept = record(actor=admin, at=days_ago(40))
    call_command("audit_retention", stdout=io.StringIO())
    assert list(AuditEvent.objects.exclude(action="checkpoint").values_list("pk", flat=True)) == [
        kept.pk
    ]
    verify_output()


def test_retention_of_everything_then_twice(record: Any, admin: Any, days_ago: Any) -> None:
    for i in range(3):
        record(actor=admin, at=days_ago(90 + i))
    head_before = AuditChainHead.objects.get(pk=1).last_hash
    call_command("audit_retention", "--older-than", "10", stdout=io.StringIO())
    only = AuditEvent.objects.get()
    assert only.prev_hash == head_before == only.after["continues_from"]
    verify_output()
    record(actor=admin)
    call_command("audit_retention", "--older-than", "10", stdout=io.StringIO())
    assert AuditEvent.objects.filter(action="checkpoint").count() == 2
    verify_output()


def test_rows_deleted_before_a_checkpoint_outside_retention_are_found(
    record: Any, admin: Any, days_ago: Any
) -> None:
    record(actor=admin, at=days_ago(90))
    kept = [record(actor=admin, at=days_ago(5 - i)) for i in range(3)]
    call_command("audit_retention", "--older-than", "30", stdout=io.StringIO())
    as_dba()
    AuditEvent.objects.filter(pk=kept[0].pk).delete()
    assert f"broken at event {kept[1].pk} (deleted)" in verify_error()


def test_forged_checkpoint_is_found(record: Any, admin: Any, days_ago: Any) -> None:
    record(actor=admin, at=days_ago(90))
    record(actor=admin, at=days_ago(1))
    call_command("audit_retention", "--older-than", "30", stdout=io.StringIO())
    as_dba()
    checkpoint = AuditEvent.objects.get(action="checkpoint")
    AuditEvent.objects.filter(pk=checkpoint.pk).update(
        after={**checkpoint.after, "continues_from": GENESIS_HASH}
    )
    assert audit_chain_verify().ok is False


def test_retention_refuses_nonsense_ages() -> None:
    with pytest.raises(CommandError, match="at least 1 day"):
        call_command("audit_retention", "--older-than", "0")


def test_verify_streams_with_a_chunked_iterator(chain: list[AuditEvent], monkeypatch: Any) -> None:
    """The walk uses QuerySet.iterator(chunk_size=...), never a list of the whole table."""
    from django.db.models.query import QuerySet

    seen: list[int | None] = []
    real = QuerySet.iterator

    def spy(self: QuerySet[Any], chunk_size: int | None = None) -> Any:
        seen.append(chunk_size)
        return real(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    verify_output()
    assert seen == [2000]


#
# The PostgreSQL trigger
#


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "the append-only trigger exists on PostgreSQL only; "
            "run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )


def _refused(operation: Any) -> str:
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError) as info, transaction.atomic():
        operation()
    return str(info.value)


def test_trigger_refuses_update(postgres_only: None, chain: list[AuditEvent]) -> None:
    message = _refused(lambda: AuditEvent.objects.filter(pk=chain[1].pk).update(message="x"))
    assert "append-only: UPDATE refused" in message
    assert AuditEvent.objects.get(pk=chain[1].pk).message == ""


def test_trigger_refuses_delete(postgres_only: None, chain: list[AuditEvent]) -> None:
    message = _refused(lambda: AuditEvent.objects.filter(pk=chain[1].pk).delete())
    assert "append-only: DELETE refused" in message
    with connection.cursor() as cursor:
        message = _refused(lambda: cursor.execute("DELETE FROM audit_auditevent"))
    assert AuditEvent.objects.count() == 6


def test_trigger_refuses_clearing_the_actor_with_another_change(
    postgres_only: None, chain: list[AuditEvent]
) -> None:
    message = _refused(
        lambda: AuditEvent.objects.filter(pk=chain[1].pk).update(actor=None, outcome="denied")
    )
    assert "UPDATE refused" in message


def test_trigger_lets_a_user_deletion_clear_the_actor(
    postgres_only: None, chain: list[AuditEvent], admin: Any
) -> None:
    admin.delete()
    assert not AuditEvent.objects.filter(actor__isnull=False).exists()
    verify_output()


def test_trigger_lets_retention_delete(
    postgres_only: None, record: Any, admin: Any, days_ago: Any
) -> None:
    record(actor=admin, at=days_ago(90))
    call_command("audit_retention", "--older-than", "30", stdout=io.StringIO())
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["checkpoint"]
    # The run that let the DELETE through is on record, and opens no later transaction.
    from audit.models import AuditRetentionRun

    assert AuditRetentionRun.objects.count() == 1
    _refused(lambda: AuditEvent.objects.all().delete())
