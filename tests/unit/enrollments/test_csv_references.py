"""The import's check of one row's hubs and CA references against what the instance has."""

from __future__ import annotations

from controlplane.references import References
from enrollments.csv.references import row_reference_errors

REFS = References(hubs=["hub-a.azure-devices.net"], cas=["root-ca"])


def ca_row(primary: str, secondary: str | None = None) -> dict[str, object]:
    refs = {"primary": primary, **({"secondary": secondary} if secondary else {})}
    return {"attestation": {"type": "x509", "x509": {"caReferences": refs}}}


def test_linked_hub_and_verified_ca_pass() -> None:
    row = {**ca_row("ROOT-CA"), "iotHubs": ["hub-a.azure-devices.net"]}
    assert row_reference_errors(row, REFS) == []


def test_every_unknown_reference_is_an_error_on_its_column() -> None:
    row = {
        **ca_row("root-ca", "other-ca"),
        "iotHubs": ["hub-b.azure-devices.net"],
        "iotHubHostName": "hub-c.azure-devices.net",
    }
    errors = {e["column"]: e["message"] for e in row_reference_errors(row, REFS)}
    assert set(errors) == {"iotHubs", "iotHubHostName", "x509CaReferenceSecondary"}
    assert "(linked: hub-a.azure-devices.net)" in errors["iotHubs"]
    assert "(verified: root-ca)" in errors["x509CaReferenceSecondary"]


def test_unknown_lists_check_nothing() -> None:
    row = {**ca_row("any"), "iotHubs": ["hub-b.azure-devices.net"]}
    assert row_reference_errors(row, References(hubs=None, cas=None)) == []
