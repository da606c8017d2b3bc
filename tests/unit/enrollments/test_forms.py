"""The enrollment forms: where errors go, and the attestation they build."""

from __future__ import annotations

from typing import Any

import pytest

from enrollments.forms import EnrollmentForm, EnrollmentGroupForm
from tests.unit.enrollments.test_csv_format import ALLOCATION_ERRORS

FIELDS = {
    "policy": "allocation_policy",
    "webhook_url": "webhook_url",
    "api_version": "webhook_api_version",
}


def enrollment_data(**fields: Any) -> dict[str, Any]:
    data = {
        "registration_id": "dev-1",
        "attestation_type": "symmetricKey",
        "key_mode": "generate",
        "provisioning_status": "enabled",
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(("policy", "url", "version", "target"), ALLOCATION_ERRORS)
def test_an_allocation_error_is_put_on_the_field_its_code_names(policy, url, version, target):
    form = EnrollmentForm(
        data=enrollment_data(allocation_policy=policy, webhook_url=url, webhook_api_version=version)
    )
    assert not form.is_valid()
    assert list(form.errors) == [FIELDS[target]]


def test_a_group_form_sends_signing_certificates_and_an_enrollment_form_client_ones():
    enrollment = EnrollmentForm(data=enrollment_data())
    group = EnrollmentGroupForm(
        data={**enrollment_data(), "enrollment_group_id": "fleet-1"},
    )
    assert enrollment.is_valid(), enrollment.errors
    assert group.is_valid(), group.errors
    enrollment.cleaned_data.update(attestation_type="x509", x509_kind="certificates", pem1="P1")
    group.cleaned_data.update(attestation_type="x509", x509_kind="certificates", pem1="P1")
    assert enrollment.attestation().to_json() == {
        "type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": "P1"}}},
    }
    assert group.attestation().to_json() == {
        "type": "x509",
        "x509": {"signingCertificates": {"primary": {"certificate": "P1"}}},
    }
