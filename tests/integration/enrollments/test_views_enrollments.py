"""Individual enrollment pages against the emulators, signed in as Dana (Data Contributor)."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.dps.types import AttestationMechanism

from .conftest import INSTANCE, unique

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


def test_list_pages_forward_with_the_continuation_token(signed_in: Any, seed: Any) -> None:
    """The list shows the columns and follows DPS's continuation token page by page."""
    for _ in range(3):
        seed.enrollment(device_id="dev-x")
    dana = signed_in("dana")
    first = dana.get(f"{BASE}/enrollments/?size=10")
    assert first.status_code == 200
    html = first.content.decode()
    for column in (
        "Registration ID",
        "Device ID",
        "Attestation",
        "Status",
        "IoT hubs",
        "Last updated",
    ):
        assert column in html
    assert 'data-testid="create-button"' in html
    page = first.context["page"]
    assert len(page.items) == 10 or not page.continuation_token
    if page.continuation_token:
        second = dana.get(f"{BASE}/enrollments/", {"size": 10, "ct": page.continuation_token})
        assert second.status_code == 200
        ids1 = {e.registration_id for e in page.items}
        ids2 = {e.registration_id for e in second.context["page"].items}
        assert ids1.isdisjoint(ids2)
        assert 'data-testid="first-page"' in second.content.decode()


def test_page_size_choice_and_htmx_fragment(signed_in: Any, seed: Any) -> None:
    """An unknown page size falls back to 25; an htmx request gets only the table."""
    seed.enrollment()
    dana = signed_in("dana")
    assert dana.get(f"{BASE}/enrollments/?size=7").context["size"] == 25
    fragment = dana.get(
        f"{BASE}/enrollments/?size=10", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="record-table"
    )
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert b'data-testid="record-table"' in fragment.content


def test_create_validates_fields_before_sending(signed_in: Any, owner_client: Any) -> None:
    """Bad input comes back next to each field, in words, and nothing reaches DPS."""
    dana = signed_in("dana")
    rid = "bad id!"
    response = dana.post(
        f"{BASE}/enrollments/new/",
        {
            "registration_id": rid,
            "attestation_type": "symmetricKey",
            "key_mode": "given",
            "primary_key": "not base64!",
            "iot_hubs": "https://hub.example.net/x",
            "allocation_policy": "custom",
            "webhook_url": "http://insecure.example.net/hook",
            "webhook_api_version": "2021-10-01",
            "twin_tags": "{bad json",
            "provisioning_status": "enabled",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "may contain only letters" in errors["registration_id"][0]
    assert errors["primary_key"] == ["The primary key must be base64."]
    assert "host name only" in errors["iot_hubs"][0]
    assert errors["webhook_url"] == ["The webhook URL must start with https://."]
    assert "not valid JSON" in errors["twin_tags"][0]
    html = response.content.decode()
    assert 'data-testid="error-webhook_url"' in html
    assert 'aria-invalid="true"' in html
    assert not AuditEvent.objects.filter(action=AuditAction.ENROLLMENT_CREATE).exists()


def test_create_existing_id_shows_dps_conflict_with_tracking_id(signed_in: Any, seed: Any) -> None:
    """Creating an id that exists shows DPS's 409 in the form, audited as failed."""
    existing = seed.enrollment()
    dana = signed_in("dana")
    response = dana.post(
        f"{BASE}/enrollments/new/",
        {
            "registration_id": existing.registration_id,
            "attestation_type": "symmetricKey",
            "key_mode": "generate",
            "provisioning_status": "enabled",
        },
    )
    assert response.status_code == 409
    assert "trackingId" in response.context["form"].non_field_errors()[0]
    event = AuditEvent.objects.get(action=AuditAction.ENROLLMENT_CREATE)
    assert event.outcome == AuditOutcome.FAILED
    assert event.dps_status == 409
    assert event.tracking_id


def test_toggle_keeps_symmetric_keys_and_is_audited(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """Disabling inline carries the keys read via attestationmechanism; htmx gets the cell."""
    created = seed.enrollment()
    keys = created.attestation.symmetric_key
    rid = created.registration_id
    dana = signed_in("dana")
    response = dana.post(
        f"{BASE}/enrollments/{rid}/status/",
        {"status": "disabled", "etag": created.etag},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert b"Disabled" in response.content
    assert b"<html" not in response.content
    after = owner_client.enrollment_attestation_mechanism(rid).symmetric_key
    assert (after.primary_key, after.secondary_key) == (keys.primary_key, keys.secondary_key)
    assert owner_client.enrollment_get(rid).provisioning_status == "disabled"
    event = AuditEvent.objects.get(action=AuditAction.ENROLLMENT_UPDATE, target_id=rid)
    assert event.outcome == AuditOutcome.SUCCESS
    assert event.before["provisioningStatus"] == "enabled"
    assert event.after["provisioningStatus"] == "disabled"
    assert keys.primary_key not in str(event.after) + str(event.before)


def test_toggle_with_stale_etag_changes_nothing(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """A toggle with an etag that is no longer current answers 412 and leaves DPS alone."""
    created = seed.enrollment()
    rid = created.registration_id
    changed = owner_client.enrollment_get(rid)
    changed.attestation = owner_client.enrollment_attestation_mechanism(rid)
    changed.device_id = "moved"
    changed.registration_state = None
    owner_client.enrollment_put(changed, if_match=changed.etag)
    dana = signed_in("dana")
    response = dana.post(
        f"{BASE}/enrollments/{rid}/status/",
        {"status": "disabled", "etag": created.etag},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 412
    assert owner_client.enrollment_get(rid).provisioning_status == "enabled"


def test_delete_needs_confirmation_and_the_etag(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """GET asks; a POST without etag is refused; with the etag it deletes and audits."""
    created = seed.enrollment()
    rid = created.registration_id
    dana = signed_in("dana")
    confirm = dana.get(f"{BASE}/enrollments/{rid}/delete/")
    assert confirm.status_code == 200
    assert b'data-testid="confirm-delete-button"' in confirm.content
    assert dana.post(f"{BASE}/enrollments/{rid}/delete/", {"etag": ""}).status_code == 400
    done = dana.post(f"{BASE}/enrollments/{rid}/delete/", {"etag": created.etag})
    assert done.status_code == 302
    with pytest.raises(Exception, match="no such"):
        owner_client.enrollment_get(rid)
    event = AuditEvent.objects.get(action=AuditAction.ENROLLMENT_DELETE, target_id=rid)
    assert event.outcome == AuditOutcome.SUCCESS
    assert event.before["registrationId"] == rid


def test_missing_enrollment_is_a_404_page_with_tracking_id(signed_in: Any) -> None:
    """A 404 from DPS is shown in words with its trackingId."""
    response = signed_in("dana").get(f"{BASE}/enrollments/{unique('none')}/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'data-testid="tracking-id"' in html
    assert "404201" in html


def test_reveal_is_audited_without_the_key(signed_in: Any, seed: Any) -> None:
    """Revealing shows the keys and writes an audit event that does not contain them."""
    created = seed.enrollment(attestation=AttestationMechanism.for_symmetric_key())
    rid = created.registration_id
    response = signed_in("dana").post(f"{BASE}/enrollments/{rid}/reveal/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert created.attestation.symmetric_key.primary_key in response.content.decode()
    event = AuditEvent.objects.get(action=AuditAction.ATTESTATION_REVEAL, target_id=rid)
    assert created.attestation.symmetric_key.primary_key not in str(event.after) + event.message
