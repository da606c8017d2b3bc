"""audit_record: the single writer, its context, redaction and the hash chain in the database."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditAction, AuditChainHead, AuditEvent, AuditOutcome
from audit.redaction import REDACTED
from audit.services import audit_record
from portal.context import client_ip_var, request_id_var, task_id_var

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model: Any) -> Any:
    from authn.models import EntraIdentity

    u = django_user_model.objects.create_user("u", first_name="Una")
    EntraIdentity.objects.create(
        user=u, tenant_id="tid", object_id="oid-1", upn="una@example.test", display_name="Una U"
    )
    return u


def test_event_carries_actor_snapshot_and_context(user: Any) -> None:
    tokens = (
        request_id_var.set("req-12345678"),
        task_id_var.set("task-1"),
        client_ip_var.set("10.1.2.3"),
    )
    try:
        event = audit_record(
            actor=user,
            action=AuditAction.ENROLLMENT_UPDATE,
            outcome=AuditOutcome.FAILED,
            target_type="enrollment",
            target_id="dev-1",
            dps_instance="dps-a",
            dps_status=412,
            dps_error_code="412001",
            tracking_id="trk",
        )
    finally:
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])
        client_ip_var.reset(tokens[2])
    event.refresh_from_db()
    assert (event.actor_id, event.actor_oid, event.actor_upn, event.actor_name) == (
        user.pk,
        "oid-1",
        "una@example.test",
        "Una U",
    )
    assert (event.request_id, event.task_id, event.client_ip) == (
        "req-12345678",
        "task-1",
        "10.1.2.3",
    )
    assert (event.dps_status, event.dps_error_code, event.tracking_id) == (412, "412001", "trk")


def test_secrets_are_redacted_before_storage(user: Any) -> None:
    before = {
        "registrationId": "dev-1",
        "attestation": {"symmetricKey": {"primaryKey": "SECRETKEY1"}},
    }
    audit_record(
        actor=user,
        action=AuditAction.ENROLLMENT_UPDATE,
        outcome=AuditOutcome.SUCCESS,
        before=before,
        after={"token": "SECRETTOKEN"},
        message="failed with Bearer eyJhbGciOiJSUzI1NiJ9.eyJhIjoiYiJ9.c2ln",
    )
    row = AuditEvent.objects.values_list("before", "after", "message").get()
    assert "SECRETKEY1" not in str(row)
    assert "SECRETTOKEN" not in str(row)
    assert "eyJ" not in row[2]
    assert row[0]["attestation"]["symmetricKey"]["primaryKey"] == REDACTED


def test_anonymous_failure_keeps_the_claimed_identity() -> None:
    event = audit_record(
        actor=None,
        action=AuditAction.SIGNIN_FAILED,
        outcome=AuditOutcome.FAILED,
        actor_upn="someone@example.test",
        message="bad_tenant",
    )
    assert (event.actor_id, event.actor_upn) == (None, "someone@example.test")


def test_chain_links_rows_and_verify_passes(user: Any) -> None:
    for i in range(5):
        audit_record(
            actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS, message=str(i)
        )
    rows = list(AuditEvent.objects.order_by("id"))
    assert rows[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert AuditChainHead.objects.get(pk=1).last_hash == rows[-1].hash
    call_command("audit_verify")


def test_deleting_the_user_keeps_the_chain_valid(user: Any) -> None:
    audit_record(actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS)
    user.delete()
    event = AuditEvent.objects.get()
    assert (event.actor_id, event.actor_upn) == (None, "una@example.test")
    call_command("audit_verify")


@pytest.mark.parametrize("tamper", ["edit", "delete", "delete_last"])
def test_audit_verify_reports_the_first_broken_link(user: Any, tamper: str) -> None:
    for i in range(4):
        audit_record(
            actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS, message=str(i)
        )
    ids = list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    if connection.vendor == "postgresql":
        # Play a database administrator: skip the append-only trigger for this transaction.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
    if tamper == "edit":
        AuditEvent.objects.filter(id=ids[1]).update(outcome=AuditOutcome.DENIED)
        expected = ids[1]
    elif tamper == "delete":
        AuditEvent.objects.filter(id=ids[1]).delete()
        expected = ids[2]
    else:
        AuditEvent.objects.filter(id=ids[3]).delete()
        expected = ids[2]
    with pytest.raises(CommandError) as info:
        call_command("audit_verify")
    assert f"broken at event {expected}" in str(info.value)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_form_one_chain(django_user_model: Any) -> None:
    """Writers in parallel threads never chain onto the same row."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(
        ("file:memorydb", ":memory:")
    ):
        pytest.skip(
            "in-memory SQLite is not shared between threads; run with DATABASE_URL=postgres://..."
        )
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(10):
                audit_record(
                    actor=None,
                    action=AuditAction.SIGNIN_FAILED,
                    outcome=AuditOutcome.FAILED,
                    message=f"{n}-{i}",
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AuditEvent.objects.count() == 40
    call_command("audit_verify")


def test_the_head_counts_every_event(user: Any) -> None:
    AuditChainHead.objects.all().delete()  # the first writer creates the head
    for n in range(3):
        audit_record(actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS)
        head = AuditChainHead.objects.get(pk=1)
        assert head.count == n + 1
        assert head.last_hash == AuditEvent.objects.latest("id").hash


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_one_statement_locks_and_reads_the_head(user: Any) -> None:
    """The head is locked and read by one SELECT ... FOR UPDATE, then moved by one UPDATE."""
    from django.test.utils import CaptureQueriesContext

    audit_record(actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS)
    with CaptureQueriesContext(connection) as queries:
        audit_record(actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS)
    head = [q["sql"] for q in queries if "audit_auditchainhead" in q["sql"]]
    assert len(head) == 2, head
    assert head[0].startswith("SELECT")
    assert head[0].endswith("FOR UPDATE")
    assert head[1].startswith("UPDATE")
