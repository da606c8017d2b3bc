"""Registration records of a group, device keys, and DPS errors shown in words."""
# ruff: noqa: F811 - the list_source fixture is imported by name, then requested

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.dps.exceptions import DpsNotFound
from enrollments.keys import derive_device_key
from tests.integration.fleet.support import list_source  # noqa: F401 - fixture

from .conftest import INSTANCE, unique

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


def test_delete_selected_reports_each_item(
    signed_in: Any, seed: Any, owner_client: Any, list_source: Any
) -> None:
    """Confirm first; then each record is deleted with its etag; a stale one is reported."""
    group = seed.group()
    gid = group.enrollment_group_id
    devs = [unique("d") for _ in range(3)]
    for dev in devs:
        seed.registration(dev, gid)
    list_source()
    dana = signed_in("dana")
    listing = dana.get(f"{BASE}/groups/{gid}/registrations/")
    assert {r["record"].registration_id for r in listing.context["rows"]} == set(devs)
    etags = {r["record"].registration_id: r["record"].etag for r in listing.context["rows"]}
    selected = [f"{d}|{etags[d]}" for d in devs[:2]] + [f"{devs[2]}|stale-etag"]
    confirm = dana.post(f"{BASE}/groups/{gid}/registrations/delete/", {"selected": selected})
    assert confirm.status_code == 200
    assert b'data-testid="confirm-delete-selected"' in confirm.content
    for dev in devs:
        assert owner_client.registration_get(dev)  # nothing deleted before confirming
    done = dana.post(
        f"{BASE}/groups/{gid}/registrations/delete/", {"selected": selected, "confirm": "yes"}
    )
    assert done.status_code == 200
    results = {r.id: r for r in done.context["results"]}
    assert results[devs[0]].ok
    assert results[devs[1]].ok
    assert not results[devs[2]].ok
    for dev in devs[:2]:
        with pytest.raises(DpsNotFound):
            owner_client.registration_get(dev)
    assert owner_client.registration_get(devs[2]).registration_id == devs[2]
    events = AuditEvent.objects.filter(action=AuditAction.REGISTRATION_DELETE)
    assert events.filter(outcome=AuditOutcome.SUCCESS).count() == 2
    assert events.get(outcome=AuditOutcome.FAILED).dps_status == 412


def test_delete_one_registration_record(signed_in: Any, seed: Any, owner_client: Any) -> None:
    """The record detail offers delete; the enrollment stays."""
    group = seed.group()
    dev = unique("one")
    seed.registration(dev, group.enrollment_group_id)
    dana = signed_in("dana")
    detail = dana.get(f"{BASE}/registrations/{dev}/", {"group": group.enrollment_group_id})
    assert detail.context["record"].status == "assigned"
    etag = dana.get(f"{BASE}/registrations/{dev}/delete/").context["etag"]
    done = dana.post(
        f"{BASE}/registrations/{dev}/delete/", {"etag": etag, "group": group.enrollment_group_id}
    )
    assert done.status_code == 302
    with pytest.raises(DpsNotFound):
        owner_client.registration_get(dev)
    assert owner_client.group_get(group.enrollment_group_id)


def test_device_key_matches_the_documented_derivation(signed_in: Any, seed: Any) -> None:
    """Compute device key = HMAC-SHA256 of the group key over the registration id; audited."""
    group = seed.group()
    keys = group.attestation.symmetric_key
    response = signed_in("kim").post(
        f"{BASE}/groups/{group.enrollment_group_id}/device-key/", {"registration_id": "sensor-42"}
    )
    assert response.status_code == 200
    assert response.context["keys"].primary == derive_device_key(keys.primary_key, "sensor-42")
    assert derive_device_key(keys.primary_key, "sensor-42") in response.content.decode()
    event = AuditEvent.objects.get(action=AuditAction.ATTESTATION_REVEAL)
    assert "sensor-42" in event.message
    assert keys.primary_key not in str(event.after)
    bad = signed_in("kim").post(
        f"{BASE}/groups/{group.enrollment_group_id}/device-key/", {"registration_id": "bad id!"}
    )
    assert bad.status_code == 400
    assert b'data-testid="device-key-error"' in bad.content


def test_reader_cannot_edit_symmetric_key_and_is_told_why(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """Without attestation.reveal an edit could not keep the keys, so it is neither offered nor run."""
    created = seed.enrollment()
    # Oscar's custom role writes but cannot reveal keys.
    from .conftest import PERSONAS

    PERSONAS.setdefault("oscar", ("oscar.operator@contoso-iot.example", "Oscar-Demo-2026!"))
    oscar = signed_in("oscar")
    detail = oscar.get(f"{BASE}/enrollments/{created.registration_id}/").content.decode()
    assert 'data-testid="edit-unavailable"' in detail
    assert 'data-testid="edit-button"' not in detail
    response = oscar.get(f"{BASE}/enrollments/{created.registration_id}/edit/")
    assert response.status_code == 403
    assert b"attestation-mechanism" in response.content


class _Forbidding:
    def enrollment_query(self, **kw: Any) -> Any:
        from enrollments.dps.exceptions import DpsForbidden

        raise DpsForbidden(status=403, error_code=403001, tracking_id="trk-403")


def test_dps_403_drops_cached_permissions_and_names_the_role(
    signed_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 403 from DPS (role removed since ARM was read) says which role is needed."""
    from enrollments.views import errors, generic

    dana = signed_in("dana")
    calls: list[Any] = []
    monkeypatch.setattr(generic, "dps_client", lambda request: _Forbidding())
    monkeypatch.setattr(errors, "capabilities_invalidate", lambda u, i: calls.append((u, i)))
    response = dana.get(f"{BASE}/enrollments/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "Device Provisioning Service Data Reader" in html
    assert "trk-403" in html
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("exc_name", "status", "words"),
    [
        ("DpsThrottled", 429, "Try again in 7 seconds"),
        ("DpsUnavailable", 503, "DPS is unavailable"),
        ("DpsConflict", 409, "conflict"),
    ],
)
def test_dps_errors_in_words(
    signed_in: Any, monkeypatch: pytest.MonkeyPatch, exc_name: str, status: int, words: str
) -> None:
    """429, 5xx/timeouts and 409 become pages with the trackingId (429 with Retry-After)."""
    from enrollments.dps import exceptions
    from enrollments.views import generic

    exc = getattr(exceptions, exc_name)(status=status, tracking_id="trk-1", retry_after=7)

    class Failing:
        def enrollment_query(self, **kw: Any) -> Any:
            raise exc

    dana = signed_in("dana")
    monkeypatch.setattr(generic, "dps_client", lambda request: Failing())
    response = dana.get(f"{BASE}/enrollments/")
    assert response.status_code == status
    assert words in response.content.decode()
    assert "trk-1" in response.content.decode()
    if status == 429:
        assert response["Retry-After"] == "7"
