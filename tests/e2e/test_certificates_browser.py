"""The CA certificate workflow in Chromium: upload, code, sign, verify, delete; a reader's view."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_signin_capabilities import _sign_in
from tests.support import certs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR", "/tmp/i15-shots"))
CARL = ("carl.certadmin@contoso-iot.example", "Carl-Demo-2026!")
CORA = ("cora.certreader@contoso-iot.example", "Cora-Demo-2026!")


def _upload(page: Any, portal: str, name: str, ca_file: Path) -> None:
    page.goto(portal + "/dps/dps-fleet-prod/certificates/")
    page.get_by_test_id("upload-name").fill(name)
    page.get_by_test_id("upload-file").set_input_files(str(ca_file))
    page.get_by_test_id("upload-submit").click()
    page.get_by_test_id(f"unverified-{name}").wait_for()


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_certificate_flow_in_the_browser(page: Any, portal: str, tmp_path: Path) -> None:
    ca, name = certs.ca("Browser Root CA"), f"browser-{uuid.uuid4().hex[:6]}"
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(certs.pem(ca.cert))
    _sign_in(page, portal, *CARL)
    _upload(page, portal, name, ca_file)

    page.get_by_test_id(f"generate-code-{name}").click()
    code = page.get_by_test_id(f"verification-code-{name}").inner_text().strip()
    assert code in page.get_by_test_id(f"openssl-{name}").inner_text()
    _shot(page, "certificates-code")

    proof_file = tmp_path / "verification.pem"
    proof_file.write_text(certs.pem(certs.verification(ca, code).cert))
    page.get_by_test_id(f"verify-file-{name}").set_input_files(str(proof_file))
    page.get_by_test_id(f"verify-{name}").click()
    page.get_by_test_id(f"verified-{name}").wait_for()
    assert page.get_by_test_id(f"verify-panel-{name}").count() == 0
    _shot(page, "certificates-verified")

    page.get_by_test_id(f"delete-{name}").click()
    page.get_by_test_id(f"delete-confirm-{name}").click()
    page.wait_for_load_state()
    assert page.get_by_test_id(f"certificate-row-{name}").count() == 0

    page.get_by_test_id("tab-hubs").click()
    page.get_by_test_id("hub-row-hub-fleet-weu.azure-devices.net").wait_for()
    assert "SharedAccessKey" not in page.content()


def test_certificate_reader_sees_no_actions(
    page: Any, chromium: Any, portal: str, tmp_path: Path
) -> None:
    name = f"reader-{uuid.uuid4().hex[:6]}"
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(certs.pem(certs.ca("Reader View Root CA", days=365).cert))
    admin = chromium.new_context(ignore_https_errors=True).new_page()
    _sign_in(admin, portal, *CARL)
    _upload(admin, portal, name, ca_file)
    admin.context.close()

    _sign_in(page, portal, *CORA)
    page.goto(portal + "/dps/dps-fleet-prod/certificates/")
    page.get_by_test_id(f"certificate-row-{name}").wait_for()
    assert page.get_by_test_id("upload-form").count() == 0
    assert page.locator("[data-testid^='delete-']").count() == 0
    assert page.locator("[data-testid^='generate-code-']").count() == 0
    _shot(page, "certificates-reader")
