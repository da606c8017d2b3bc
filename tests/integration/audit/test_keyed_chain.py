"""The keyed audit chain: a tamperer with SQL but without AUDIT_HMAC_KEYS is always found.

Each test plays someone who can run any SQL (the append-only triggers switched off, as a
database owner can) but does not hold the HMAC key, which lives in the environment only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.chain import GENESIS_HASH, canonical_json, event_payload
from audit.models import AuditAction, AuditChainHead, AuditEvent, AuditOutcome

pytestmark = pytest.mark.django_db

OLD_KEY = "k0:" + base64.b64encode(b"o" * 32).decode()
NEW_KEY = "k1:" + base64.b64encode(b"n" * 32).decode()


def as_dba() -> None:
    """Switch the append-only triggers off for this transaction, as a database owner can."""
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


def unkeyed_hash(event: AuditEvent) -> str:
    """What a tamperer without the key can compute: the plain SHA-256 of the content."""
    return hashlib.sha256(canonical_json(event_payload(event)).encode()).hexdigest()


def wrong_key_hash(event: AuditEvent) -> str:
    """An HMAC under a key the tamperer made up, claimed under a configured key id."""
    return hmac.new(
        b"x" * 32, canonical_json(event_payload(event)).encode(), hashlib.sha256
    ).hexdigest()


@pytest.fixture
def keys(settings: Any) -> Any:
    settings.AUDIT_HMAC_KEYS = [OLD_KEY]
    return settings


@pytest.fixture
def chain(keys: Any, record: Any, admin: Any) -> list[AuditEvent]:
    return [
        record(actor=admin, dps_instance="dps-a", target_id=f"dev-{i}", after={"n": i})
        for i in range(6)
    ]


def test_rows_carry_their_key_id_and_are_not_a_plain_sha256(chain: list[AuditEvent]) -> None:
    assert {e.key_id for e in chain} == {"k0"}
    assert all(e.hash != unkeyed_hash(e) for e in chain)
    out = verify_output()
    assert "audit chain intact (6 events, from genesis)" in out
    assert f"head {chain[-1].hash}" in out  # to keep outside the database


def test_edit_with_a_recomputed_unkeyed_hash_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    forged = AuditEvent.objects.get(pk=chain[2].pk)
    forged.outcome = AuditOutcome.DENIED
    AuditEvent.objects.filter(pk=forged.pk).update(outcome="denied", hash=unkeyed_hash(forged))
    assert f"broken at event {chain[2].pk} (edited)" in verify_error()


def test_edit_relabelled_as_unkeyed_is_found(chain: list[AuditEvent]) -> None:
    """Dropping the key id to pass the row off as a pre-keying row does not work either."""
    as_dba()
    forged = AuditEvent.objects.get(pk=chain[2].pk)
    forged.key_id = ""
    forged.message = "nothing happened"
    AuditEvent.objects.filter(pk=forged.pk).update(
        key_id="", message=forged.message, hash=unkeyed_hash(forged)
    )
    assert f"broken at event {chain[2].pk}" in verify_error()


def test_delete_in_the_middle_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk=chain[3].pk).delete()
    assert f"broken at event {chain[4].pk} (deleted)" in verify_error()


def test_delete_of_the_newest_rows_with_the_head_moved_back_is_found(
    chain: list[AuditEvent],
) -> None:
    as_dba()
    AuditEvent.objects.filter(pk__gte=chain[4].pk).delete()
    AuditChainHead.objects.filter(pk=1).update(last_hash=chain[3].hash)
    message = verify_error()
    assert "chain head" in message
    assert "(head)" in message


def test_insert_without_the_key_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    forged = AuditEvent(
        time=chain[5].time,
        action=AuditAction.ENROLLMENT_DELETE,
        outcome=AuditOutcome.SUCCESS,
        actor_upn="innocent@contoso.example",
        prev_hash=chain[5].hash,
        key_id="k0",
    )
    forged.hash = wrong_key_hash(forged)
    forged.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(last_hash=forged.hash)
    assert f"broken at event {forged.pk}" in verify_error()


def test_truncated_prefix_is_found(chain: list[AuditEvent]) -> None:
    as_dba()
    AuditEvent.objects.filter(pk__lt=chain[3].pk).delete()
    assert f"broken at event {chain[3].pk} (deleted)" in verify_error()


@pytest.mark.parametrize("signature", ["unsigned", "wrong key", "unknown key id"])
def test_truncated_prefix_behind_a_forged_checkpoint_is_found(
    chain: list[AuditEvent], signature: str
) -> None:
    """Cut the oldest rows and append a checkpoint that claims retention did it."""
    as_dba()
    AuditEvent.objects.filter(pk__lt=chain[3].pk).delete()
    forged = AuditEvent(
        time=chain[5].time,
        action=AuditAction.CHECKPOINT,
        outcome=AuditOutcome.SUCCESS,
        target_type="audit_log",
        target_id="retention",
        after={"continues_from": chain[2].hash, "deleted": 3, "first_kept_id": chain[3].pk},
        prev_hash=chain[5].hash,
        key_id={"unsigned": "", "wrong key": "k0", "unknown key id": "k9"}[signature],
    )
    forged.hash = unkeyed_hash(forged) if signature == "unsigned" else wrong_key_hash(forged)
    forged.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(last_hash=forged.hash)
    message = verify_error()
    assert f"broken at event {forged.pk} (checkpoint)" in message


def test_genuine_checkpoint_is_signed_and_anchors(
    keys: Any, record: Any, admin: Any, days_ago: Any
) -> None:
    record(actor=admin, at=days_ago(90))
    kept = record(actor=admin, at=days_ago(1))
    call_command("audit_retention", "--older-than", "30", stdout=io.StringIO())
    checkpoint = AuditEvent.objects.get(action=AuditAction.CHECKPOINT)
    assert checkpoint.key_id == "k0"
    assert checkpoint.after["continues_from"] == kept.prev_hash
    assert "intact (2 events, from checkpoint" in verify_output()


def test_rotation_old_and_new_rows_verify_together(
    keys: Any, record: Any, admin: Any, days_ago: Any
) -> None:
    old = [record(actor=admin, message=f"old {i}") for i in range(3)]
    keys.AUDIT_HMAC_KEYS = [NEW_KEY, OLD_KEY]  # rotate: the new key first
    new = [record(actor=admin, message=f"new {i}") for i in range(3)]
    assert {e.key_id for e in old} == {"k0"}
    assert {e.key_id for e in new} == {"k1"}
    assert "audit chain intact (6 events, from genesis)" in verify_output()
    # Without the old key, its rows can no longer be checked: said so, by key id.
    keys.AUDIT_HMAC_KEYS = [NEW_KEY]
    message = verify_error()
    assert f"broken at event {old[0].pk} (unknown key)" in message
    assert "k0" in message


def test_rows_written_before_keying_verify_only_as_a_sealed_prefix(
    keys: Any, record: Any, admin: Any
) -> None:
    """Pre-keying rows (no key id) pass before the first keyed row, never after it."""
    from audit.services import audit_chain_seal

    as_dba()
    legacy = []
    prev = GENESIS_HASH
    for i in range(3):
        e = AuditEvent(
            time=record(actor=admin).time,
            action=AuditAction.SIGNIN,
            outcome=AuditOutcome.SUCCESS,
            message=f"legacy {i}",
            prev_hash=prev,
        )
        e.hash = unkeyed_hash(e)
        prev = e.hash
        legacy.append(e)
    AuditEvent.objects.all().delete()
    for e in legacy:
        e.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(last_hash=prev, key_id="", mac="")
    # Unsealed, a run of unkeyed rows is what a keyless forger would write: refused.
    assert "(unkeyed)" in verify_error()
    seal = audit_chain_seal()
    assert seal is not None
    assert (seal.action, seal.key_id, seal.prev_hash) == ("chain_keyed", "k0", prev)
    assert "audit chain intact (4 events, from genesis)" in verify_output()
    later = record(actor=admin)
    assert "intact (5 events" in verify_output()
    # An unkeyed row after keyed ones is refused.
    forged = AuditEvent(
        time=later.time, action="signin", outcome="success", prev_hash=later.hash, key_id=""
    )
    forged.hash = unkeyed_hash(forged)
    forged.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(last_hash=forged.hash)
    assert f"broken at event {forged.pk} (unkeyed)" in verify_error()


def test_production_without_keys_names_the_variable(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from audit.keys import audit_current_key

    settings.DEBUG = False
    settings.AUDIT_HMAC_KEYS = []
    with pytest.raises(ImproperlyConfigured, match="AUDIT_HMAC_KEYS"):
        audit_current_key()


@pytest.mark.parametrize(
    "value",
    [
        "nokeyid",
        "k0:",
        "k0:not-base64!!",
        "k0:" + base64.b64encode(b"short").decode(),
        "bad id:secretvalue",
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(settings: Any, value: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from audit.keys import audit_current_key

    settings.AUDIT_HMAC_KEYS = [value]
    with pytest.raises(ImproperlyConfigured, match="AUDIT_HMAC_KEYS") as info:
        audit_current_key()
    secret = value.partition(":")[2]
    if secret:
        assert secret not in str(info.value)


def test_development_derives_a_key_when_none_is_set(settings: Any) -> None:
    from audit.keys import audit_current_key

    settings.DEBUG = True
    settings.AUDIT_HMAC_KEYS = []
    key_id, secret = audit_current_key()
    assert key_id == "dev"
    assert len(secret) == 32


def test_deploy_check_names_a_missing_key(settings: Any) -> None:
    from audit.checks import check_audit_keys

    settings.DEBUG = False
    settings.AUDIT_HMAC_KEYS = []
    errors = check_audit_keys()
    assert [e.id for e in errors] == ["audit.E001"]
    assert "AUDIT_HMAC_KEYS" in errors[0].msg


#
# The PostgreSQL guards
#


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "the append-only triggers exist on PostgreSQL only; "
            "run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )


def _refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql)
    return str(info.value)


def test_truncate_is_refused(postgres_only: None, chain: list[AuditEvent]) -> None:
    # IMMEDIATE first: rows this test transaction wrote leave deferred FK checks pending,
    # which would make PostgreSQL refuse the TRUNCATE for that reason instead.
    immediate = "SET CONSTRAINTS ALL IMMEDIATE; "
    assert "TRUNCATE refused" in _refused(immediate + "TRUNCATE audit_auditevent")
    assert "TRUNCATE refused" in _refused(immediate + "TRUNCATE audit_auditevent CASCADE")
    assert AuditEvent.objects.count() == 6


def test_the_old_session_flag_no_longer_lifts_the_guard(
    postgres_only: None, chain: list[AuditEvent]
) -> None:
    message = _refused("SET LOCAL audit.retention = 'on'; DELETE FROM audit_auditevent")
    assert "DELETE refused" in message
    assert AuditEvent.objects.count() == 6


def test_a_retention_run_lifts_the_guard_below_its_cut_only(
    postgres_only: None, chain: list[AuditEvent]
) -> None:
    from audit.models import AuditRetentionRun

    def run_then_delete_through_the_cut() -> None:
        AuditRetentionRun.objects.create(delete_below_id=chain[2].pk)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [chain[2].pk])

    with pytest.raises(DatabaseError, match="DELETE refused"), transaction.atomic():
        run_then_delete_through_the_cut()
    assert AuditEvent.objects.count() == 6
    # Below the cut, in the run's own transaction, the DELETE passes.
    AuditRetentionRun.objects.create(delete_below_id=chain[2].pk)
    AuditEvent.objects.filter(pk__lt=chain[2].pk).delete()
    assert AuditEvent.objects.count() == 4
    assert "DELETE refused" in _refused("DELETE FROM audit_auditevent")
    # The run that lifted the guard stays on record.
    assert "append-only" in _refused("UPDATE audit_auditretentionrun SET delete_below_id = 0")
    assert "append-only" in _refused("DELETE FROM audit_auditretentionrun")
    assert "TRUNCATE refused" in _refused("TRUNCATE audit_auditretentionrun")
    assert "TRUNCATE refused" in _refused("TRUNCATE audit_auditchainhead")
    assert "append-only" in _refused("DELETE FROM audit_auditchainhead")


def test_a_run_recorded_by_another_transaction_does_not_open_this_one(
    postgres_only: None, transactional_db: None, keys: Any, record: Any, admin: Any
) -> None:
    """The database stamps each run with its own transaction: a stored run is no key."""
    from audit.models import AuditRetentionRun

    events = [record(actor=admin) for _ in range(3)]
    AuditRetentionRun.objects.create(delete_below_id=events[-1].pk + 1, txid=1)  # committed
    assert AuditRetentionRun.objects.get().txid != 1  # stamped, whatever the insert said
    assert "DELETE refused" in _refused("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 3
