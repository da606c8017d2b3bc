"""The enrollment list of an indexed instance in headless Chromium: search, filter, sort, page.

Screenshots go to /tmp/shots/lists-*.png.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, IndividualEnrollment, InitialTwin
from instances.models import DpsInstance
from tests.integration.fleet.support import run_pass

from .test_enrollments_browser import DANA, INSTANCE, owner  # noqa: F401 - fixture
from .test_signin_capabilities import _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/shots")


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"lists-{name}.png"), full_page=True)


def _ids(page: Any) -> list[str]:
    ids: list[str] = page.locator("[data-testid^='link-']").all_inner_texts()
    return ids


def test_search_filter_sort_and_page_an_indexed_list(
    page: Any,
    portal: str,
    owner: DpsClient,  # noqa: F811 - the fixture imported above
) -> None:
    stem = f"plant3-{uuid.uuid4().hex[:6]}"
    for i in range(40):
        owner.enrollment_put(
            IndividualEnrollment(
                registration_id=f"{stem}-{i:02d}",
                device_id=f"{stem}-sensor-{i:02d}",
                attestation=AttestationMechanism.for_symmetric_key(),
                provisioning_status="disabled" if i % 4 == 0 else "enabled",
                initial_twin=InitialTwin.of(tags={"line": "a" if i < 20 else "b"}),
            )
        )
    run_pass(DpsInstance.objects.get(name=INSTANCE))
    _sign_in(page, portal, *DANA)

    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/")
    assert page.get_by_test_id("fleet-banner").count() == 0
    page.get_by_label("Registration or device id").fill(stem)
    page.get_by_test_id("fleet-apply").click()
    page.wait_for_url(re.compile(rf".*q={stem}.*"))
    assert page.get_by_test_id("fleet-total").inner_text().startswith("40 of ")
    assert _ids(page) == [f"{stem}-{i:02d}" for i in range(25)]
    _shot(page, "search")

    # Numbered pages keep the search.
    page.get_by_test_id("page-2").click()
    page.wait_for_url(re.compile(r".*page=2.*"))
    assert page.get_by_test_id("page-current").inner_text() == "2"
    assert _ids(page) == [f"{stem}-{i:02d}" for i in range(25, 40)]

    # Filters: status and a tag; the facet beside the status filter counts what each value
    # would match with the tag kept.
    page.get_by_label("Status", exact=True).select_option("disabled")
    page.get_by_label("Tag (key=value)").fill("line=b")
    page.get_by_test_id("fleet-apply").click()
    page.wait_for_url(re.compile(r".*status=disabled.*"))
    assert _ids(page) == [f"{stem}-{i:02d}" for i in (20, 24, 28, 32, 36)]
    assert "disabled 5" in page.get_by_test_id("facet-status").inner_text()
    assert "enabled 15" in page.get_by_test_id("facet-status").inner_text()  # the other value
    assert page.get_by_test_id("fleet-pages").count() == 0
    _shot(page, "filtered")

    # Sort by id, descending on the second click.
    page.get_by_test_id("sort-id").click()
    page.wait_for_url(re.compile(r".*sort=-id.*"))
    assert _ids(page) == [f"{stem}-{i:02d}" for i in (36, 32, 28, 24, 20)]

    # The rows keep their status toggle.
    rid = f"{stem}-36"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id(f"toggle-{rid}").click()
    page.get_by_test_id(f"status-{rid}").get_by_text("Enabled").wait_for()
    assert owner.enrollment_get(rid).provisioning_status == "enabled"
    _shot(page, "sorted")
