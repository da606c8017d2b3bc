"""One attestation builder: the form and the CSV import send the same body for the same input."""

from __future__ import annotations

import io
from typing import Any

import pytest

from enrollments.csv.parse import dps_payload
from enrollments.csv.reader import read_rows
from enrollments.forms import EnrollmentForm, EnrollmentGroupForm

KEY1 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
KEY2 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
EK = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw=="


@pytest.mark.parametrize(
    ("form_fields", "cells", "body"),
    [
        pytest.param(
            {"attestation_type": "tpm", "tpm_endorsement_key": EK, "tpm_storage_root_key": EK},
            {"attestationType": "tpm", "tpmEndorsementKey": EK, "tpmStorageRootKey": EK},
            {"type": "tpm", "tpm": {"endorsementKey": EK, "storageRootKey": EK}},
            id="tpm",
        ),
        pytest.param(
            {"attestation_type": "tpm", "tpm_endorsement_key": EK},
            {"attestationType": "tpm", "tpmEndorsementKey": EK},
            {"type": "tpm", "tpm": {"endorsementKey": EK}},
            id="tpm-without-srk",
        ),
        pytest.param(
            {
                "attestation_type": "symmetricKey",
                "key_mode": "given",
                "primary_key": KEY1,
                "secondary_key": KEY2,
            },
            {
                "attestationType": "symmetricKey",
                "symmetricKeyPrimary": KEY1,
                "symmetricKeySecondary": KEY2,
            },
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY1, "secondaryKey": KEY2}},
            id="keys",
        ),
        pytest.param(
            {"attestation_type": "symmetricKey", "key_mode": "generate"},
            {"attestationType": "symmetricKey"},
            {"type": "symmetricKey", "symmetricKey": {}},
            id="keys-by-dps",
        ),
        pytest.param(
            {
                "attestation_type": "x509",
                "x509_kind": "ca_references",
                "ca_primary": "root-ca",
                "ca_secondary": "next-ca",
            },
            {
                "attestationType": "x509",
                "x509CaReferencePrimary": "root-ca",
                "x509CaReferenceSecondary": "next-ca",
            },
            {
                "type": "x509",
                "x509": {"caReferences": {"primary": "root-ca", "secondary": "next-ca"}},
            },
            id="ca-references",
        ),
    ],
)
def test_form_and_csv_send_the_same_attestation(
    form_fields: dict[str, Any], cells: dict[str, str], body: dict[str, Any]
) -> None:
    form = EnrollmentForm(
        data={"registration_id": "dev-1", "provisioning_status": "enabled", **form_fields}
    )
    assert form.is_valid(), form.errors
    cells = {"registrationId": "dev-1", **cells}
    data = f"{','.join(cells)}\r\n{','.join(cells.values())}\r\n".encode()
    (row,) = read_rows(io.BytesIO(data))
    assert row.errors == []
    assert row.payload is not None
    assert form.attestation().to_json() == body
    assert dps_payload(row.payload)["attestation"] == body


def test_a_group_form_sends_signing_certificates_and_an_enrollment_form_client_ones() -> None:
    data = {"attestation_type": "symmetricKey", "provisioning_status": "enabled"}
    enrollment = EnrollmentForm(data={**data, "registration_id": "dev-1"})
    group = EnrollmentGroupForm(data={**data, "enrollment_group_id": "fleet-1"})
    assert enrollment.is_valid(), enrollment.errors
    assert group.is_valid(), group.errors
    # A certificate as clean() leaves it (validated and turned into PEM).
    x509 = {"attestation_type": "x509", "x509_kind": "certificates", "pem1": "PEM-1"}
    enrollment.cleaned_data.update(x509)
    group.cleaned_data.update(x509)
    assert enrollment.attestation().to_json() == {
        "type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": "PEM-1"}}},
    }
    assert group.attestation().to_json() == {
        "type": "x509",
        "x509": {"signingCertificates": {"primary": {"certificate": "PEM-1"}}},
    }
