"""What the conflict page compares, and when an edit or a toggle is refused."""

from __future__ import annotations

from authn.permissions import Capability
from enrollments.dps.types import IndividualEnrollment
from enrollments.edit_rules import MISSING, diff_rows, edit_blocker, status_blocker


def _enrollment(**extra: object) -> IndividualEnrollment:
    data = {
        "registrationId": "dev-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": "a2tra2tra2tra2tra2traw==", "secondaryKey": "x"},
        },
        "provisioningStatus": "enabled",
        "etag": '"1"',
        "lastUpdatedDateTimeUtc": "2026-01-01T00:00:00Z",
        **extra,
    }
    return IndividualEnrollment.from_json(data)


def test_rows_are_sorted_with_absent_sides_marked_and_lists_whole() -> None:
    current = _enrollment(deviceId="a", iotHubs=["h1", "h2"], etag='"2"')
    mine = _enrollment(iotHubs=["h1", "h2"], initialTwin={"tags": {"owner": "ada"}})
    rows = {r["path"]: r for r in diff_rows(current, mine)}
    assert [r["path"] for r in diff_rows(current, mine)] == sorted(rows)
    assert rows["deviceId"] == {
        "path": "deviceId",
        "current": "a",
        "mine": MISSING,
        "changed": True,
    }
    assert rows["initialTwin.tags.owner"]["current"] == MISSING
    assert rows["iotHubs"] == {
        "path": "iotHubs",
        "current": '["h1", "h2"]',
        "mine": '["h1", "h2"]',
        "changed": False,
    }
    # Read-only fields and the keys GET masks are not compared; no IoT Edge is the default.
    assert not any(p.startswith(("etag", "lastUpdated", "attestation.symmetricKey")) for p in rows)
    assert rows["capabilities.iotEdge"]["changed"] is False


def test_symmetric_key_records_need_the_reveal_capability_to_change() -> None:
    model = _enrollment()
    assert "attestation-mechanism" in edit_blocker(model, {Capability.ENROLLMENTS_WRITE})
    assert edit_blocker(model, {Capability.ATTESTATION_REVEAL}) == ""
    assert status_blocker(model, {Capability.ATTESTATION_REVEAL}) == ""
