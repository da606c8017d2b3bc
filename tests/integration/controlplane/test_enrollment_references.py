"""Enrollment forms through the emulators: linked hubs and verified CAs as the user sees them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from enrollments.dps.exceptions import DpsNotFound
from tests.integration.controlplane.conftest import INSTANCE, unique
from tests.integration.controlplane.test_certificate_pages import (
    dps_owner,
    register_x509,
    upload,
    verified_through_portal,
)
from tests.support import certs

pytestmark = pytest.mark.django_db


def url(name: str, *args: str) -> str:
    """Return a page of the instance by its URL name (the paths' spelling may change)."""
    return reverse(name, args=[INSTANCE, *args])


WEU, NEU = "hub-fleet-weu.azure-devices.net", "hub-fleet-neu.azure-devices.net"


def new_group(client: Client, gid: str, ca: str, **extra: Any) -> Any:
    data = {
        "enrollment_group_id": gid,
        "attestation_type": "x509",
        "x509_kind": "ca_references",
        "ca_primary": ca,
        "provisioning_status": "enabled",
        **extra,
    }
    return client.post(url("enrollments:group_create"), data)


def test_group_of_a_verified_ca_created_in_the_portal_registers_its_device(
    persona: Callable[[str], Client], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    carl = persona("carl")
    ca, name, gid = certs.ca("Portal Group CA"), unique("pgca"), unique("pgrp")
    verified_through_portal(carl, ca, name)
    page = carl.get(url("enrollments:group_create")).content.decode()
    assert f'<option value="{name}">' in page
    assert f'<option value="{WEU}">' in page
    r = new_group(carl, gid, name, iot_hubs=[WEU], allocation_policy="static")
    assert r.status_code == 302, r.content.decode()[:2000]
    stored = dps_owner(endpoints).group_get(gid)
    assert stored.attestation.x509.ca_references.primary == name  # type: ignore[union-attr]
    assert stored.iot_hubs == [WEU]
    rid = unique("device")
    r = register_x509(endpoints, certs.leaf(rid, issuer=ca), tmp_path)
    assert r.status_code == 200, r.text
    assert r.json()["registrationState"]["assignedHub"] == WEU
    assert rid in carl.get(url("enrollments:registration_list", gid)).content.decode()


def test_unverified_ca_and_unlinked_hub_are_refused_nothing_sent(
    persona: Callable[[str], Client], endpoints: dict[str, Any]
) -> None:
    carl = persona("carl")
    name, gid = unique("uvca"), unique("pgrp")
    assert upload(carl, name, certs.pem(certs.ca("Unverified CA").cert).encode()).status_code == 302
    r = new_group(carl, gid, name, iot_hubs=["hub-elsewhere.azure-devices.net"])
    assert r.status_code == 400
    page = r.content.decode()
    assert 'data-testid="error-ca_primary"' in page
    assert f"{name} is not a verified CA certificate" in page
    assert 'data-testid="error-iot_hubs"' in page
    assert "hub-elsewhere.azure-devices.net is not linked" in page
    assert f"{WEU}, {NEU}" in page or f"{NEU}, {WEU}" in page
    with pytest.raises(DpsNotFound):
        dps_owner(endpoints).group_get(gid)


def test_data_plane_only_user_gets_text_fields_with_the_reason(
    persona: Callable[[str], Client],
) -> None:
    dana = persona("dana")
    page = dana.get(url("enrollments:group_create")).content.decode()
    assert '<textarea name="iot_hubs"' in page
    assert 'data-testid="help-iot_hubs"' in page
    assert "provisioningServices/read" in page
    assert '<input type="text" name="ca_primary"' in page
    assert "provisioningServices/certificates/read" in page
    enrollment = dana.get(url("enrollments:enrollment_create")).content.decode()
    assert '<textarea name="iot_hubs"' in enrollment
