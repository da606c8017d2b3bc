"""An X.509 enrollment group made in Chromium from a CA verified in the portal, on a linked hub."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from tests.e2e.test_certificates_browser import CARL, _shot, _upload
from tests.e2e.test_signin_capabilities import _sign_in
from tests.support import certs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
WEU = "hub-fleet-weu.azure-devices.net"


def test_group_of_a_verified_ca_on_a_linked_hub(page: Any, portal: str, tmp_path: Path) -> None:
    ca, name = certs.ca("Browser Group CA"), f"grpca-{uuid.uuid4().hex[:6]}"
    gid = f"e2e-x509-{uuid.uuid4().hex[:8]}"
    (tmp_path / "ca.pem").write_text(certs.pem(ca.cert))
    _sign_in(page, portal, *CARL)
    _upload(page, portal, name, tmp_path / "ca.pem")
    page.get_by_test_id(f"generate-code-{name}").click()
    code = page.get_by_test_id(f"verification-code-{name}").inner_text().strip()
    (tmp_path / "proof.pem").write_text(certs.pem(certs.verification(ca, code).cert))
    page.get_by_test_id(f"verify-file-{name}").set_input_files(str(tmp_path / "proof.pem"))
    page.get_by_test_id(f"verify-{name}").click()
    page.get_by_test_id(f"verified-{name}").wait_for()

    page.goto(portal + reverse("enrollments:group_create", args=["dps-fleet-prod"]))
    page.get_by_test_id("field-enrollment_group_id").fill(gid)
    page.get_by_test_id("field-attestation_type").select_option("x509")
    page.get_by_test_id("field-x509_kind").select_option("ca_references")
    page.get_by_test_id("field-ca_primary").select_option(name)
    page.get_by_test_id("field-allocation_policy").select_option("static")
    page.get_by_test_id("field-iot_hubs").select_option([WEU])
    _shot(page, "group-form-choices")
    page.get_by_test_id("save-button").click()
    page.wait_for_url(f"**/groups/{gid}/")
    assert page.get_by_test_id("value-ca-primary").inner_text() == name
    assert page.get_by_test_id("value-hubs").inner_text() == WEU
