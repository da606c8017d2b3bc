"""Enrollment pages in headless Chromium, signed in through the Entra emulator's page.

Screenshots of the list, detail, form and conflict pages go to /tmp/enrollments-*.png.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from enrollments.dps.auth import parse_connection_string
from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, IndividualEnrollment

from .test_signin_capabilities import _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
INSTANCE = "dps-fleet-prod"
DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
REGGIE = ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!")
KIM = ("kim.keyreader@contoso-iot.example", "Kim-Demo-2026!")


@pytest.fixture
def owner(endpoints: dict[str, Any]) -> DpsClient:
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cs = parse_connection_string(entry["connection_string"])
    return DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"])


def _seed(owner: DpsClient, prefix: str) -> IndividualEnrollment:
    return owner.enrollment_put(
        IndividualEnrollment(
            registration_id=f"{prefix}-{uuid.uuid4().hex[:8]}",
            device_id="thermostat-7",
            attestation=AttestationMechanism.for_symmetric_key(),
            iot_hubs=["hub-fleet-weu.azure-devices.net"],
        )
    )


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=f"/tmp/enrollments-{name}.png", full_page=True)


def test_reader_sees_no_write_or_reveal_controls(page: Any, portal: str, owner: DpsClient) -> None:
    """Reggie (Data Reader) can browse but sees no create, edit, delete, toggle or reveal."""
    record = _seed(owner, "reader-view")
    _sign_in(page, portal, *REGGIE)
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/?size=100")
    assert page.get_by_test_id("record-table").is_visible()
    assert page.get_by_test_id("create-button").count() == 0
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/{record.registration_id}/")
    assert page.get_by_test_id("record-id").inner_text() == record.registration_id
    for testid in (
        "edit-button",
        "delete-button",
        "reveal-button",
        f"toggle-{record.registration_id}",
    ):
        assert page.get_by_test_id(testid).count() == 0, testid
    assert page.get_by_test_id("masked-key").is_visible()
    page.goto(f"{portal}/dps/{INSTANCE}/groups/")
    assert page.get_by_test_id("create-button").count() == 0


def test_contributor_creates_edits_and_deletes_an_enrollment(
    page: Any, portal: str, owner: DpsClient
) -> None:
    """Dana creates, edits, disables inline, and deletes an individual enrollment."""
    page.on("dialog", lambda dialog: dialog.accept())
    rid = f"e2e-{uuid.uuid4().hex[:8]}"
    _sign_in(page, portal, *DANA)
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/?size=10")
    _shot(page, "list")
    page.get_by_test_id("create-button").click()
    page.get_by_label("Registration ID").fill(rid)
    page.get_by_label("IoT Hub device ID").fill("thermostat-1")
    page.get_by_label("Attestation").select_option("symmetricKey")
    assert page.get_by_label("Endorsement key (base64)").is_hidden()
    page.get_by_label("Initial twin tags (JSON)").fill('{"site": "ams"')
    page.get_by_test_id("save-button").click()
    assert "not valid JSON" in page.get_by_test_id("error-twin_tags").inner_text()
    _shot(page, "form-errors")
    page.get_by_label("Initial twin tags (JSON)").fill('{"site": "ams"}')
    page.get_by_test_id("save-button").click()
    page.wait_for_url(f"**/enrollments/{rid}/")
    assert page.get_by_test_id("value-device-id").inner_text() == "thermostat-1"
    _shot(page, "detail")

    page.get_by_test_id("edit-button").click()
    _shot(page, "form")
    page.get_by_label("IoT Hub device ID").fill("thermostat-2")
    page.get_by_test_id("save-button").click()
    page.wait_for_url(f"**/enrollments/{rid}/")
    assert page.get_by_test_id("value-device-id").inner_text() == "thermostat-2"

    page.get_by_test_id(f"toggle-{rid}").click()
    page.get_by_test_id(f"status-{rid}").get_by_text("Disabled").wait_for()
    assert owner.enrollment_get(rid).provisioning_status == "disabled"

    page.get_by_test_id("delete-button").click()
    page.get_by_test_id("confirm-delete-button").click()
    page.wait_for_url(f"**/dps/{INSTANCE}/enrollments/")
    assert owner.enrollment_query(page_size=1000).items is not None
    from enrollments.dps.exceptions import DpsNotFound

    with pytest.raises(DpsNotFound):
        owner.enrollment_get(rid)


def test_contributor_creates_edits_and_deletes_a_group(
    page: Any, portal: str, owner: DpsClient
) -> None:
    """Dana manages a symmetric-key enrollment group and computes a device key."""
    gid = f"e2e-group-{uuid.uuid4().hex[:8]}"
    _sign_in(page, portal, *DANA)
    page.goto(f"{portal}/dps/{INSTANCE}/groups/")
    page.get_by_test_id("create-button").click()
    page.get_by_label("Enrollment group ID").fill(gid)
    page.get_by_label("Attestation").select_option("symmetricKey")
    page.get_by_label("Allocation policy").select_option("custom")
    page.get_by_label("Webhook URL (https)").fill("https://alloc.example.net/pick")
    page.get_by_label("Webhook API version").fill("2021-10-01")
    page.get_by_test_id("save-button").click()
    page.wait_for_url(f"**/groups/{gid}/")
    assert "alloc.example.net" in page.get_by_test_id("value-webhook").inner_text()
    page.get_by_test_id("device-key-input").fill("sensor-1")
    page.get_by_test_id("device-key-button").click()
    assert len(page.get_by_test_id("revealed-device-primary").input_value()) == 44
    page.get_by_test_id("edit-button").click()
    page.get_by_label("Initial twin tags (JSON)").fill('{"fleet": "north"}')
    page.get_by_test_id("save-button").click()
    page.wait_for_url(f"**/groups/{gid}/")
    assert "north" in page.get_by_test_id("value-tags").inner_text()
    page.get_by_test_id("delete-button").click()
    page.get_by_test_id("confirm-delete-button").click()
    page.wait_for_url(f"**/dps/{INSTANCE}/groups/")


def test_key_reader_reveals_a_key_but_cannot_edit(page: Any, portal: str, owner: DpsClient) -> None:
    """Kim reveals and copies a key (audited) and sees no edit controls."""
    record = _seed(owner, "kim-view")
    primary = record.attestation.symmetric_key.primary_key
    _sign_in(page, portal, *KIM)
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/{record.registration_id}/")
    assert page.get_by_test_id("edit-button").count() == 0
    assert page.get_by_test_id("delete-button").count() == 0
    assert primary not in page.content()
    page.get_by_test_id("reveal-button").click()
    assert page.get_by_test_id("revealed-primary").input_value() == primary
    assert page.get_by_test_id("copy-primary").is_visible()
    _shot(page, "revealed")
    from audit.models import AuditAction, AuditEvent

    assert AuditEvent.objects.filter(
        action=AuditAction.ATTESTATION_REVEAL, target_id=record.registration_id
    ).exists()


def test_conflict_page_in_the_browser(page: Any, portal: str, owner: DpsClient) -> None:
    """A change made behind the open form ends on the conflict page; nothing overwritten."""
    record = _seed(owner, "conflict")
    rid = record.registration_id
    _sign_in(page, portal, *DANA)
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/{rid}/edit/")
    behind = owner.enrollment_get(rid)
    behind.attestation = owner.enrollment_attestation_mechanism(rid)
    behind.registration_state = None
    behind.device_id = "changed-elsewhere"
    owner.enrollment_put(behind, if_match=behind.etag)
    page.get_by_label("IoT Hub device ID").fill("mine")
    page.get_by_test_id("save-button").click()
    assert page.get_by_test_id("conflict-page").is_visible()
    _shot(page, "conflict")
    assert owner.enrollment_get(rid).device_id == "changed-elsewhere"
    page.get_by_test_id("reapply-button").click()
    page.wait_for_url(f"**/enrollments/{rid}/")
    assert owner.enrollment_get(rid).device_id == "mine"


def test_contributor_selects_enrollments_for_deletion(
    page: Any, portal: str, owner: DpsClient
) -> None:
    """Dana ticks two rows and reaches the confirmation page naming exactly those two."""
    first, second = _seed(owner, "sel"), _seed(owner, "sel")
    _sign_in(page, portal, *DANA)
    page.goto(f"{portal}/dps/{INSTANCE}/enrollments/?size=100")
    page.get_by_test_id(f"select-{first.registration_id}").check()
    page.get_by_test_id(f"select-{second.registration_id}").check()
    _shot(page, "list-selected")
    page.get_by_test_id("delete-selected").click()
    page.get_by_test_id("confirm-delete-selected").wait_for()
    listed = page.get_by_test_id("selected-list").inner_text().split()
    assert sorted(listed) == sorted([first.registration_id, second.registration_id])
    _shot(page, "delete-selected-confirm")
