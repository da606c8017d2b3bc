"""Who may open the audit pages: Portal.Admin and Portal.Auditor; others get an audited 403."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent, AuditOutcome

from .conftest import signed_in

pytestmark = pytest.mark.django_db


def _urls(event_id: int) -> list[str]:
    return [
        "/audit/",
        f"/audit/events/{event_id}/",
        "/audit/targets/dps-a/enrollment/dev-1/",
        "/audit/targets/?target_type=view&target_id=/a/b/",
        "/audit/actors/oid-ada/",
        "/audit/chart/",
        "/audit/export/csv/",
        "/audit/export/jsonl/",
    ]


@pytest.fixture
def event(record: Any, admin: Any) -> Any:
    return record(actor=admin, dps_instance="dps-a", target_type="enrollment", target_id="dev-1")


def test_anonymous_is_sent_to_sign_in(event: Any) -> None:
    client = Client()
    for url in _urls(event.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/auth/login/?next="), url


def test_user_without_audit_role_gets_403_and_a_denied_event(operator: Any, event: Any) -> None:
    client = signed_in(operator)
    for url in _urls(event.pk):
        before = AuditEvent.objects.count()
        response = client.get(url)
        assert response.status_code == 403, url
        assert b'data-testid="forbidden"' in response.content
        assert AuditEvent.objects.count() == before + 1
        denied = AuditEvent.objects.order_by("-id").first()
        assert (denied.action, denied.outcome, denied.actor_upn, denied.target_id) == (
            AuditAction.DENIED,
            AuditOutcome.DENIED,
            "oscar@contoso.example",
            url.partition("?")[0],  # deny() records the path, not the query
        )
    # Nothing about the log leaked into a refusal.
    assert b"dev-1" not in client.get("/audit/").content


@pytest.mark.parametrize("role_user", ["admin", "auditor"])
def test_admin_and_auditor_may_open_every_page(
    role_user: str, request: pytest.FixtureRequest, event: Any
) -> None:
    client = signed_in(request.getfixturevalue(role_user))
    for url in _urls(event.pk):
        response = client.get(url)
        assert response.status_code == 200, url


def test_pages_are_get_only(auditor_client: Client) -> None:
    assert auditor_client.post("/audit/").status_code == 405
    assert auditor_client.post("/audit/export/csv/").status_code == 405


def test_navbar_links_the_audit_log_only_for_audit_roles(auditor: Any, operator: Any) -> None:
    assert b'data-testid="nav-audit"' in signed_in(auditor).get("/audit/").content
    home = signed_in(operator).get("/")
    assert b'data-testid="nav-audit"' not in home.content


def test_unknown_event_and_export_format_are_404(auditor_client: Client) -> None:
    assert auditor_client.get("/audit/events/999999/").status_code == 404
    assert auditor_client.get("/audit/export/xlsx/").status_code == 404
