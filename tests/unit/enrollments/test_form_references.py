"""Enrollment forms offer the instance's linked hubs and verified CAs, and refuse the others."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controlplane.types import CaCertificate, Choices, LinkedHub
from enrollments.dps.types import AttestationMechanism, EnrollmentGroup
from enrollments.forms import EnrollmentForm, EnrollmentGroupForm

WEU = LinkedHub("hub-weu.azure-devices.net", "westeurope", 2, True)
NEU = LinkedHub("hub-neu.azure-devices.net", "northeurope", 1, False)
HUBS = Choices([WEU, NEU])
NO_ARM = (
    "Your Azure role cannot read the DPS resource (Microsoft.Devices/provisioningServices/read)."
)
NO_CERTS = "Your Azure role cannot list this instance's CA certificates."


def ca(name: str) -> CaCertificate:
    when = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    return CaCertificate(name, f"CN={name}", "AB" * 20, when, True, when, when, "etag")


CAS = Choices([ca("fleet-root"), ca("fleet-backup")])


def group(**extra: Any) -> dict[str, Any]:
    data = {
        "enrollment_group_id": "grp-1",
        "attestation_type": "x509",
        "x509_kind": "ca_references",
        "ca_primary": "fleet-root",
        "provisioning_status": "enabled",
    }
    data.update(extra)
    return data


def test_verified_ca_is_accepted_and_built() -> None:
    form = EnrollmentGroupForm(group(ca_secondary="fleet-backup"), ca_choices=CAS)
    assert form.is_valid(), form.errors
    refs = form.build().attestation.x509.ca_references  # type: ignore[union-attr]
    assert (refs.primary, refs.secondary) == ("fleet-root", "fleet-backup")  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["ca_primary", "ca_secondary"])
def test_unverified_or_unknown_ca_is_a_field_error(field: str) -> None:
    form = EnrollmentGroupForm(group(**{field: "not-verified-ca"}), ca_choices=CAS)
    assert not form.is_valid()
    message = form.errors[field][0]
    assert "not-verified-ca is not a verified CA certificate" in message
    assert "fleet-root, fleet-backup" in message


def test_ca_field_is_a_select_of_verified_cas() -> None:
    html = str(EnrollmentGroupForm(ca_choices=CAS)["ca_primary"])
    assert "<select" in html
    assert 'value="fleet-root"' in html
    assert "CN=fleet-backup" in html


def test_ca_field_stays_text_with_the_reason() -> None:
    form = EnrollmentGroupForm(group(ca_primary="any-name"), ca_choices=Choices(reason=NO_CERTS))
    assert "<select" not in str(form["ca_primary"])
    assert NO_CERTS in form["ca_primary"].help_text
    assert form.is_valid(), form.errors  # DPS itself decides, as before


def test_an_edit_shows_a_ca_that_is_no_longer_verified() -> None:
    existing = EnrollmentGroup(
        enrollment_group_id="grp-1", attestation=AttestationMechanism.for_x509_ca_references("old")
    )
    html = str(EnrollmentGroupForm(existing=existing, ca_choices=CAS)["ca_primary"])
    assert 'value="old" selected' in html
    assert "old (not verified)" in html


def test_linked_hub_is_accepted() -> None:
    data = group(iot_hubs=[WEU.name], allocation_policy="static")
    form = EnrollmentGroupForm(data, hub_choices=HUBS, ca_choices=CAS)
    assert form.is_valid(), form.errors
    assert form.build().iot_hubs == [WEU.name]


def test_unlinked_hub_is_a_field_error_naming_the_linked_ones() -> None:
    data = group(iot_hubs=[WEU.name, "other.azure-devices.net"])
    form = EnrollmentGroupForm(data, hub_choices=HUBS, ca_choices=CAS)
    assert not form.is_valid()
    message = form.errors["iot_hubs"][0]
    assert "other.azure-devices.net is not linked" in message
    assert f"{WEU.name}, {NEU.name}" in message


def test_hub_field_is_a_multi_select_with_location_weight_and_policy() -> None:
    html = str(EnrollmentForm(hub_choices=HUBS)["iot_hubs"])
    assert "<select" in html
    assert "multiple" in html
    assert "hub-weu.azure-devices.net — westeurope, weight 2, policy applies" in html
    assert "hub-neu.azure-devices.net — northeurope, weight 1, policy not applied" in html


def test_hub_field_stays_text_with_the_reason() -> None:
    data = group(iot_hubs="typed.azure-devices.net")
    form = EnrollmentGroupForm(data, hub_choices=Choices(reason=NO_ARM), ca_choices=CAS)
    assert "<textarea" in str(form["iot_hubs"])
    assert NO_ARM in form["iot_hubs"].help_text
    assert form.is_valid(), form.errors
    assert form.build().iot_hubs == ["typed.azure-devices.net"]


def test_an_edit_keeps_an_unlinked_hub_visible_and_refuses_it() -> None:
    existing = EnrollmentGroup(
        enrollment_group_id="grp-1",
        attestation=AttestationMechanism.for_x509_ca_references("fleet-root"),
        iot_hubs=["gone.azure-devices.net"],
    )
    form = EnrollmentGroupForm(existing=existing, hub_choices=HUBS)
    html = str(form["iot_hubs"])
    assert "gone.azure-devices.net (not linked)" in html
    assert 'value="gone.azure-devices.net" selected' in html
