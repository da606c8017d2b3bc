"""The audit pages in headless Chromium: an auditor signs in, filters, opens an event, pages
through histories and the chart; a contributor is refused. Screenshots go to
var/screenshots/audit-*.png for a person to look at; CSP violations fail the test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AUDREY = ("audrey.auditor@contoso-iot.example", "Audrey-Demo-2026!")
DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _seed() -> None:
    """Forty days of varied events, one with a before/after worth a diff."""
    now = timezone.now()
    kinds = [
        (AuditAction.ENROLLMENT_CREATE, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENT_UPDATE, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENT_UPDATE, AuditOutcome.FAILED),
        (AuditAction.DENIED, AuditOutcome.DENIED),
        (AuditAction.ATTESTATION_REVEAL, AuditOutcome.SUCCESS),
    ]
    for day in range(40, 0, -1):
        for i in range((day * 7) % 9 + 1):
            action, outcome = kinds[(day + i) % len(kinds)]
            at = now - timedelta(days=day, minutes=i * 13)
            with mock.patch("audit.services.timezone.now", return_value=at):
                audit_record(
                    actor=None,
                    actor_oid="d32e1251-5086-4c52-bbfe-3b563a87f904",
                    actor_upn=DANA[0],
                    actor_name="Dana Contributor",
                    action=action,
                    outcome=outcome,
                    dps_instance="dps-fleet-prod" if i % 3 else "dps-fleet-lab",
                    target_type="enrollment",
                    target_id=f"sensor-{day:02d}-{i}",
                    dps_status=412 if outcome == AuditOutcome.FAILED else None,
                    dps_error_code="412001" if outcome == AuditOutcome.FAILED else "",
                    message="precondition failed" if outcome == AuditOutcome.FAILED else "",
                )
    audit_record(
        actor=None,
        actor_oid="d32e1251-5086-4c52-bbfe-3b563a87f904",
        actor_upn=DANA[0],
        actor_name="Dana Contributor",
        action=AuditAction.ENROLLMENT_UPDATE,
        outcome=AuditOutcome.SUCCESS,
        dps_instance="dps-fleet-prod",
        target_type="enrollment",
        target_id="thermostat-0042",
        dps_status=200,
        before={
            "registrationId": "thermostat-0042",
            "provisioningStatus": "enabled",
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": "c2VjcmV0LWtleS0x"},
            },
            "initialTwin": {"tags": {"site": "Lyon", "floor": 2}},
            "iotHubHostName": "hub-a.azure-devices.net",
        },
        after={
            "registrationId": "thermostat-0042",
            "provisioningStatus": "disabled",
            "attestation": {
                "type": "symmetricKey",
                "symmetricKey": {"primaryKey": "c2VjcmV0LWtleS0y"},
            },
            "initialTwin": {"tags": {"site": "Lyon", "building": "B"}},
            "iotHubHostName": "hub-a.azure-devices.net",
        },
    )


def _sign_in(page: Any, portal: str, username: str, password: str, next_path: str = "/") -> None:
    page.goto(portal + "/")
    page.get_by_test_id("signin-main").click()
    page.get_by_test_id("signin-username").fill(username)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url(portal + "/")


def _watch_csp(page: Any) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return problems


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"audit-{name}.png"), full_page=True)


def test_auditor_walks_through_the_audit_pages(page: Any, portal: str) -> None:
    _seed()
    csp = _watch_csp(page)
    _sign_in(page, portal, *AUDREY)
    page.get_by_test_id("nav-audit").click()
    page.wait_for_url(portal + "/audit/")
    rows = page.get_by_test_id("audit-row")
    assert rows.count() == 50
    _shot(page, "list")

    # Filters: outcome and DPS instance, submitted with the form.
    page.get_by_test_id("filter-outcome").select_option("failed")
    page.get_by_test_id("filter-dps").fill("dps-fleet-prod")
    page.get_by_test_id("filter-apply").click()
    page.wait_for_url("**/audit/?*outcome=failed*")
    outcomes = page.get_by_test_id("row-outcome").all_inner_texts()
    assert outcomes
    assert set(outcomes) == {"Failed"}
    _shot(page, "list-filtered")

    # Older page and back.
    page.goto(portal + "/audit/")
    page.get_by_test_id("page-older").click()
    page.wait_for_url("**/audit/?before=*")
    assert page.get_by_test_id("page-newer").count() == 1

    # The event with a diff: redacted keys on both sides, changed fields highlighted.
    page.goto(portal + "/audit/?q=thermostat-0042")
    page.get_by_test_id("event-link").first.click()
    page.wait_for_url("**/audit/events/*/")
    diff = page.get_by_test_id("event-diff")
    assert "[REDACTED]" in diff.inner_text()
    assert "c2VjcmV0" not in page.content()
    changes = page.get_by_test_id("diff-row").evaluate_all("els => els.map(e => e.dataset.change)")
    assert {"changed", "added", "removed", "same"} <= set(changes)
    _shot(page, "event")

    page.get_by_test_id("event-target-history").click()
    page.wait_for_url("**/audit/targets/dps-fleet-prod/enrollment/thermostat-0042/")
    assert page.get_by_test_id("audit-row").count() == 1
    _shot(page, "target-history")

    page.get_by_test_id("actor-link").first.click()
    page.wait_for_url("**/audit/actors/*/")
    assert "Dana Contributor" in page.get_by_test_id("audit-heading").inner_text()
    _shot(page, "actor")

    page.goto(portal + "/audit/")
    page.get_by_test_id("tab-chart").click()
    page.wait_for_url("**/audit/chart/")
    bars = page.get_by_test_id("chart-bar")
    assert bars.count() >= 30
    assert page.locator("[data-testid='audit-chart'] rect.audit-bar-failed").count() > 0
    box = page.get_by_test_id("audit-chart").bounding_box()
    assert box["width"] > 600
    assert box["height"] > 100
    _shot(page, "chart")
    assert csp == []


def test_contributor_is_refused(page: Any, portal: str) -> None:
    _sign_in(page, portal, *DANA)
    assert page.get_by_test_id("nav-audit").count() == 0
    response = page.goto(portal + "/audit/")
    assert response.status == 403
    assert page.get_by_test_id("forbidden").is_visible()
    assert (
        "Portal.Admin or Portal.Auditor" in page.get_by_test_id("forbidden-required").inner_text()
    )
    _shot(page, "forbidden")
