"""A flood of anonymous /auth/callback hits: few audit rows, every failure counted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditAction, AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db

FLOODER = "203.0.113.7"
OTHER = "198.51.100.20"


@pytest.fixture
def limits(settings: Any) -> Any:
    settings.AUDIT_SIGNIN_FAILED_WINDOW_SECONDS = 60
    settings.AUDIT_SIGNIN_FAILED_BURST = 5
    return settings


def _hit(address: str) -> None:
    response = Client(REMOTE_ADDR=address).get("/auth/callback", {"state": "forged"})
    assert response.status_code == 400


def _failures() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.SIGNIN_FAILED).order_by("id"))


def _counted(rows: list[AuditEvent]) -> int:
    """Failures the rows account for: one each, or the count a summary row carries."""
    return sum(
        int(r.after["summarised_failures"]) if r.after and "summarised_failures" in r.after else 1
        for r in rows
    )


def _head_writes() -> int:
    head = AuditChainHead.objects.filter(pk=1).first()
    return head.count if head else 0


def test_fifty_anonymous_hits_write_a_bounded_number_of_rows(limits: Any) -> None:
    for _ in range(50):
        _hit(FLOODER)
    rows = _failures()
    assert len(rows) == 5  # the burst; the other 45 are counted, not chained
    assert _head_writes() == 5  # the global chain lock was taken 5 times, not 50
    # The window ends; the next failure from that address writes the summary first.
    later = timezone.now() + timedelta(seconds=61)
    with mock.patch("audit.throttle.timezone.now", return_value=later):
        _hit(FLOODER)
    rows = _failures()
    assert len(rows) == 7
    summary = rows[5]
    assert summary.after["summarised_failures"] == 45
    assert summary.client_ip == FLOODER
    assert "45 more failed sign-ins from 203.0.113.7" in summary.message
    assert rows[6].after is None  # the new window's first failure, written in full
    assert _counted(rows) == 51


def test_a_quiet_address_is_summarised_at_the_next_failure_from_anyone(limits: Any) -> None:
    for _ in range(8):
        _hit(FLOODER)
    later = timezone.now() + timedelta(seconds=61)
    with mock.patch("audit.throttle.timezone.now", return_value=later):
        _hit(OTHER)
    rows = _failures()
    summaries = [r for r in rows if r.after and "summarised_failures" in r.after]
    assert [(s.client_ip, s.after["summarised_failures"]) for s in summaries] == [(FLOODER, 3)]
    assert _counted(rows) == 9


def test_retention_writes_pending_counts_first(limits: Any) -> None:
    from django.core.management import call_command

    for _ in range(7):
        _hit(FLOODER)
    later = timezone.now() + timedelta(seconds=61)
    with mock.patch("audit.throttle.timezone.now", return_value=later):
        import io

        call_command("audit_retention", "--older-than", "30", stdout=io.StringIO())
    assert _counted(_failures()) == 7


def test_addresses_have_their_own_windows(limits: Any) -> None:
    for _ in range(6):
        _hit(FLOODER)
    for _ in range(3):
        _hit(OTHER)
    by_address = [r.client_ip for r in _failures()]
    assert by_address.count(FLOODER) == 5
    assert by_address.count(OTHER) == 3


def test_failures_with_an_identity_are_throttled_too_but_still_counted(limits: Any) -> None:
    """The per-address limit applies to every failed sign-in; nothing goes uncounted."""
    from audit.throttle import audit_signin_failure
    from portal.context import client_ip_var

    token = client_ip_var.set(FLOODER)
    try:
        for i in range(7):
            audit_signin_failure(message=f"account_disabled: {i}", actor_upn="x@contoso.example")
    finally:
        client_ip_var.reset(token)
    rows = _failures()
    assert len(rows) == 5
    assert all(r.actor_upn == "x@contoso.example" for r in rows)
