"""axe-core over the pages no other browser test reaches, and the check itself.

Every page the browser tests load is checked when each test ends (the ``page`` fixture,
tests/support/axe.py); this module visits the rest: the signed-out pages, the registry of
instances for a portal admin, the fleet index, and each instance's pages for a reader.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_signin_capabilities import _sign_in
from tests.support.axe import assert_accessible, axe_violations

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ADA = ("ada.admin@contoso-iot.example", "Ada-Demo-2026!")
REGGIE = ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!")


def test_the_check_finds_a_serious_violation(page: Any) -> None:
    page.set_content(
        "<!doctype html><html lang='en'><head><title>t</title></head><body><main>"
        "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='><button></button></main></body></html>"
    )
    found = {v["id"] for v in axe_violations(page)}
    assert {"image-alt", "button-name"} <= found
    with pytest.raises(AssertionError, match="image-alt"):
        assert_accessible(page)


def test_signed_out_pages(page: Any, portal: str) -> None:
    for path in ("/", "/auth/login/?next=/audit/"):
        page.goto(portal + path)
        assert_accessible(page)


@pytest.mark.parametrize(
    ("who", "paths"),
    [
        (ADA, ["/", "/auth/instances/"]),
        (
            REGGIE,
            [
                "/instances/dps-fleet-prod/fleet/enrollments/",
                "/instances/dps-fleet-prod/fleet/groups/",
                "/dps/dps-fleet-prod/",
                "/dps/dps-fleet-prod/bulk/import/",
                "/dps/dps-fleet-prod/bulk/jobs/",
                "/dps/dps-fleet-prod/certificates/",
                "/dps/dps-fleet-prod/hubs/",
                "/dps/dps-fleet-prod/registrations/",
            ],
        ),
    ],
    ids=["admin", "reader"],
)
def test_pages_of_signed_in_users(
    page: Any, portal: str, who: tuple[str, str], paths: list[str]
) -> None:
    _sign_in(page, portal, *who)
    for path in paths:
        response = page.goto(portal + path)
        assert response is not None
        assert response.status < 500, path
        assert_accessible(page, path)
