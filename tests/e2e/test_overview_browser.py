"""The instance overview in Chromium: a Contributor's and a Reader's view, a chart segment's link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from instances.models import DpsInstance
from tests.e2e.test_signin_capabilities import _sign_in
from tests.integration.fleet.overview_fleet import seed_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR", "/tmp/shots"))
INSTANCE = "dps-fleet-prod"
DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
REGGIE = ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!")


@pytest.fixture
def seeded(portal: str) -> str:
    seed_fleet(DpsInstance.objects.get(name=INSTANCE))
    return portal


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def _serious_violations(page: Any, within: str = "html") -> list[str]:
    """Run axe-core (the project's npm copy) over ``within``; return serious and critical rules."""
    page.evaluate(AXE.read_text())  # through DevTools: the portal's CSP allows no injected tag
    result = page.evaluate(
        "within => axe.run(document.querySelector(within), {resultTypes: ['violations']})", within
    )
    return [
        f"{v['id']}: {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_contributor_overview_and_a_segment_to_the_filtered_list(page: Any, seeded: str) -> None:
    _sign_in(page, seeded, *DANA)
    page.goto(seeded + "/")
    line = page.get_by_test_id(f"overview-line-{INSTANCE}")
    assert "need attention" in line.inner_text()
    _shot(page, "home")
    # This instance's card only: the page's other parts are checked by the portal-wide axe run.
    assert _serious_violations(page, f'[data-testid="instance-{INSTANCE}"]') == []
    page.get_by_test_id(f"open-overview-{INSTANCE}").click()
    page.get_by_test_id("overview-quotas").wait_for()
    assert page.get_by_test_id("quota-enrollments").get_attribute("data-used") == "10"
    assert page.get_by_test_id("orphan-delete-grp-gone").is_visible()
    _shot(page, "overview-contributor")
    assert _serious_violations(page, '[data-testid="overview-body"]') == []
    page.get_by_test_id("segment-provisioning-disabled").locator("rect").click()
    page.get_by_test_id("fleet-total").wait_for()
    assert page.url.endswith(f"/dps/{INSTANCE}/enrollments/?status=disabled")
    assert page.get_by_test_id("fleet-total").inner_text().startswith("3 of 10")


def test_reader_overview_has_no_delete(page: Any, seeded: str) -> None:
    _sign_in(page, seeded, *REGGIE)
    page.goto(f"{seeded}/dps/{INSTANCE}/")
    page.get_by_test_id("overview-attention").wait_for()
    assert page.get_by_test_id("orphan-grp-gone").is_visible()
    assert page.get_by_test_id("orphan-delete-grp-gone").count() == 0
    assert page.get_by_test_id("cert-group-expired").get_attribute("data-count") == "1"
    _shot(page, "overview-reader")


def test_failed_registrations_open_the_list_of_every_registration_record(
    page: Any, seeded: str
) -> None:
    """ "1 registration failed" counts a group's device: its link opens a list that has it."""
    _sign_in(page, seeded, *REGGIE)
    page.goto(f"{seeded}/dps/{INSTANCE}/")
    page.get_by_test_id("attention-failed").get_by_role("link").click()
    page.get_by_test_id("fleet-total").wait_for()
    assert page.url.endswith(f"/dps/{INSTANCE}/registrations/?status=failed")
    assert page.get_by_test_id("fleet-total").inner_text().startswith("1 of 8")
    assert page.get_by_test_id("reg-row-dev-bad").is_visible()
    assert page.get_by_test_id("reg-group").inner_text() == "group grp-x509"
    assert page.get_by_test_id("tab-registrations").get_attribute("aria-current") == "page"
    _shot(page, "registrations-failed")
    page.get_by_test_id("fleet-clear").click()
    page.get_by_test_id("reg-row-sym-0").wait_for()
    assert page.get_by_test_id("fleet-total").inner_text().startswith("8 of 8")
    assert _serious_violations(page, "main") == []
    _shot(page, "registrations-all")
