"""The audit's client address and request id: from the trusted proxy, well-formed, or made here."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db


def _failed_signin(**headers: Any) -> tuple[AuditEvent, Any]:
    """Hit the callback anonymously (no pending sign-in): one signin_failed row, no network."""
    response = Client().get("/auth/callback", {"state": "nope"}, **headers)
    assert response.status_code == 400
    return AuditEvent.objects.filter(action=AuditAction.SIGNIN_FAILED).latest("id"), response


XFF = "203.0.113.9, 198.51.100.7"


def test_without_the_proxy_setting_forwarded_for_is_ignored(settings: Any) -> None:
    settings.PORTAL_BEHIND_PROXY = False
    event, _ = _failed_signin(REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR=XFF)
    assert event.client_ip == "192.0.2.10"


def test_behind_the_proxy_the_right_most_forwarded_address_is_the_client(settings: Any) -> None:
    settings.PORTAL_BEHIND_PROXY = True
    event, _ = _failed_signin(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=XFF)
    # The left entry is whatever the client claimed; the right one the proxy saw itself.
    assert event.client_ip == "198.51.100.7"


def test_two_trusted_proxies_take_the_second_entry_from_the_right(settings: Any) -> None:
    settings.PORTAL_BEHIND_PROXY = True
    settings.PORTAL_PROXY_HOPS = 2
    event, _ = _failed_signin(
        REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.0.0.1"
    )
    assert event.client_ip == "203.0.113.9"


@pytest.mark.parametrize("header", ["", "not-an-address", "203.0.113.9, <script>", " , "])
def test_behind_the_proxy_a_missing_or_bad_header_falls_back_to_the_peer(
    settings: Any, header: str
) -> None:
    settings.PORTAL_BEHIND_PROXY = True
    event, _ = _failed_signin(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=header)
    assert event.client_ip == "10.0.0.2"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("6.6.6.6, 203.0.113.9:50123", "203.0.113.9"),  # Application Gateway adds the port
        ("[2001:db8::1]:443", "2001:db8::1"),
    ],
)
def test_forwarded_address_forms(settings: Any, header: str, expected: str) -> None:
    settings.PORTAL_BEHIND_PROXY = True
    event, _ = _failed_signin(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=header)
    assert event.client_ip == expected


@pytest.mark.parametrize(
    "incoming",
    ["abc", "f3b0c7e2-6a61-4d4e-9a52-1c1f0e4c8a10", "proxy.req_42-x", "A" * 64],
)
def test_a_well_formed_request_id_is_kept(incoming: str) -> None:
    event, response = _failed_signin(HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] == incoming
    assert event.request_id == incoming


@pytest.mark.parametrize(
    "incoming",
    ["abc12345\n", "abc12345\nX-Injected: 1", "A" * 65, "<script>", "id with space", "ïd-12345"],
)
def test_a_malformed_request_id_is_replaced(incoming: str) -> None:
    event, response = _failed_signin(HTTP_X_REQUEST_ID=incoming)
    rid = response["X-Request-ID"]
    assert rid != incoming
    assert len(rid) == 32
    assert rid.isalnum()
    assert event.request_id == rid
