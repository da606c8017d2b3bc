"""An allocation error is put on the input its code names, in the form and in the CSV import."""

from __future__ import annotations

import io

import pytest

from enrollments.csv.reader import read_rows
from enrollments.forms import EnrollmentForm

#: Allocation inputs (policy, webhook URL, API version) and the one their error is about.
ALLOCATION_ERRORS = [
    pytest.param("custom", "https://f.example.com/x", "2021-02-30", "api_version", id="no-date"),
    pytest.param("custom", "https://f.example.com/x", "1.0", "api_version", id="format"),
    pytest.param("custom", "https://f.example.com/x", "", "api_version", id="no-version"),
    pytest.param("custom", "", "2021-10-01", "webhook_url", id="no-url"),
    pytest.param("custom", "http://f.example.com/x", "2021-10-01", "webhook_url", id="http"),
    pytest.param("hashed", "https://f.example.com/x", "", "webhook_url", id="unused-url"),
    pytest.param("static", "", "", "policy", id="static-no-hub"),
    pytest.param("weighted", "", "", "policy", id="unknown-policy"),
]
COLUMNS = {
    "policy": "allocationPolicy",
    "webhook_url": "webhookUrl",
    "api_version": "webhookApiVersion",
}
FIELDS = {
    "policy": "allocation_policy",
    "webhook_url": "webhook_url",
    "api_version": "webhook_api_version",
}


@pytest.mark.parametrize(("policy", "url", "version", "target"), ALLOCATION_ERRORS)
def test_an_allocation_error_is_put_on_the_column_its_code_names(
    policy: str, url: str, version: str, target: str
) -> None:
    """Routed by the ValidationError's code: "2021-02-30 is not a real date" names no column."""
    header = "registrationId,attestationType,allocationPolicy,webhookUrl,webhookApiVersion\r\n"
    data = f"{header}dev-1,symmetricKey,{policy},{url},{version}\r\n".encode()
    (row,) = read_rows(io.BytesIO(data))
    assert [e["column"] for e in row.errors] == [COLUMNS[target]]


@pytest.mark.parametrize(("policy", "url", "version", "target"), ALLOCATION_ERRORS)
def test_an_allocation_error_is_put_on_the_field_its_code_names(
    policy: str, url: str, version: str, target: str
) -> None:
    form = EnrollmentForm(
        data={
            "registration_id": "dev-1",
            "attestation_type": "symmetricKey",
            "key_mode": "generate",
            "provisioning_status": "enabled",
            "allocation_policy": policy,
            "webhook_url": url,
            "webhook_api_version": version,
        }
    )
    assert not form.is_valid()
    assert list(form.errors) == [FIELDS[target]]
