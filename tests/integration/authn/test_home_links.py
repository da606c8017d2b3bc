"""The home page links each instance's pages only where the user may read them."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def test_reader_gets_links_on_both_instances(entra_signin: Any, dps_instances: Any) -> None:
    """A reader on both instances sees the links to enrollments and groups."""
    assert entra_signin("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!").status_code == 302
    html = entra_signin.client.get("/").content.decode()
    for name in ("dps-fleet-prod", "dps-fleet-lab"):
        assert f'href="/dps/{name}/enrollments/" data-testid="open-enrollments-{name}"' in html
        assert f'data-testid="open-groups-{name}"' in html


def test_no_role_gets_no_links(entra_signin: Any, dps_instances: Any) -> None:
    """A user with no DPS role sees the instances but no way into them."""
    assert entra_signin("nora.norole@contoso-iot.example", "Nora-Demo-2026!").status_code == 302
    html = entra_signin.client.get("/").content.decode()
    assert 'data-testid="open-enrollments-' not in html
    assert 'data-testid="instance-links-' not in html


def test_links_follow_each_instance_separately(entra_signin: Any, dps_instances: Any) -> None:
    """Audrey reads prod only: links for prod, none for lab."""
    assert (
        entra_signin("audrey.auditor@contoso-iot.example", "Audrey-Demo-2026!").status_code == 302
    )
    html = entra_signin.client.get("/").content.decode()
    assert 'data-testid="open-enrollments-dps-fleet-prod"' in html
    assert 'data-testid="open-enrollments-dps-fleet-lab"' not in html
