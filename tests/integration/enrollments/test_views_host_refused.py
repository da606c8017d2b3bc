"""A refused DPS host is a page in words, never a 500, and no DPS call carries a token."""

from __future__ import annotations

from typing import Any

import pytest

from instances.models import DpsInstance

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


def test_a_host_arm_does_not_name_is_refused_with_a_page(signed_in: Any) -> None:
    """Oscar (Reader on the resource) lets ARM tell the real host: the recorded one differs."""
    oscar = signed_in("oscar")
    DpsInstance.objects.filter(name=INSTANCE).update(
        host="dps-fleet-lab.azure-devices-provisioning.net"
    )
    response = oscar.get(f"{BASE}/enrollments/")
    assert response.status_code == 503
    html = response.content.decode()
    assert 'data-testid="instance-refused"' in html
    assert "dps-fleet-lab.azure-devices-provisioning.net" in html
    assert "dps-fleet-prod.azure-devices-provisioning.net" in html
    assert "ARM" in html


def test_an_http_host_is_refused_with_a_page(signed_in: Any, dps_entry: dict[str, Any]) -> None:
    dana = signed_in("dana")
    DpsInstance.objects.filter(name=INSTANCE).update(host=f"http://{dps_entry['host']}")
    response = dana.get(f"{BASE}/enrollments/")
    assert response.status_code == 503
    html = response.content.decode()
    assert 'data-testid="instance-refused"' in html
    assert f"http://{dps_entry['host']}" in html
    assert "https" in html


def test_the_emulator_instance_still_works(signed_in: Any) -> None:
    """With the development endpoints file the emulator's host is accepted (and ARM agrees)."""
    for persona in ("oscar", "dana"):
        assert signed_in(persona).get(f"{BASE}/enrollments/").status_code == 200
