"""Every target id, whatever it holds, has a working history link (or none); never a 500."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent, AuditOutcome

from .test_pages_list import ids_on

pytestmark = pytest.mark.django_db

AWKWARD_IDS = [
    "/dps/dps-a/enrollments/dev-1/",
    "with space",
    "ünïcødé/名前",
    "what?x=1&y=2",
    "hash#fragment",
    "..",
    "a/../b",
    ".",
    "/",
    "50%25 off\\back",
]


def _href(body: str, testid: str) -> str | None:
    match = re.search(rf'href="([^"]+)" data-testid="{testid}"', body)
    return unescape(match.group(1)) if match else None


@pytest.mark.parametrize("target_id", AWKWARD_IDS)
@pytest.mark.parametrize("dps_instance", ["dps-a", ""])
def test_event_page_and_history_link_work_for_any_target_id(
    auditor_client: Client, record: Any, admin: Any, target_id: str, dps_instance: str
) -> None:
    event = record(
        actor=admin,
        action=AuditAction.DENIED,
        outcome=AuditOutcome.DENIED,
        dps_instance=dps_instance,
        target_type="view",
        target_id=target_id,
    )
    other = record(actor=admin, dps_instance="dps-a", target_type="view", target_id="other")
    page = auditor_client.get(f"/audit/events/{event.pk}/")
    assert page.status_code == 200
    href = _href(page.content.decode(), "event-target-history")
    assert href is not None, "the event page links to the target's history"
    # Dot segments would be folded away by a browser; the link must not contain any.
    assert "/../" not in href
    assert "/./" not in href
    history = auditor_client.get(href)
    assert event.pk in ids_on(history)
    assert other.pk not in ids_on(history)

    listing = auditor_client.get("/audit/", {"target_type": "view"})
    row_links = re.findall(
        rf'data-event-id="{event.pk}".*?href="([^"]+)" data-testid="target-link"',
        listing.content.decode(),
        re.S,
    )
    assert row_links, "the list links the event's target"
    assert event.pk in ids_on(auditor_client.get(unescape(row_links[0])))


def test_a_refusal_event_written_by_deny_has_a_working_page(
    auditor_client: Client, operator: Any
) -> None:
    """The 403 of /audit/ for an operator records target ``view`` with the path as its id."""
    from .conftest import signed_in

    assert signed_in(operator).get("/audit/chart/").status_code == 403
    denied = AuditEvent.objects.get(action=AuditAction.DENIED)
    assert denied.target_id == "/audit/chart/"
    page = auditor_client.get(f"/audit/events/{denied.pk}/")
    assert page.status_code == 200
    href = _href(page.content.decode(), "event-target-history")
    assert href is not None
    assert denied.pk in ids_on(auditor_client.get(href))


def test_history_without_a_target_is_a_clear_400(auditor_client: Client) -> None:
    response = auditor_client.get("/audit/targets/", {"target_type": "view"})
    assert response.status_code == 400
    assert "target_id" in response.content.decode()
