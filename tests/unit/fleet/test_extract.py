"""DPS documents to index rows (fleet/extract.py): fields, times, certificates, no secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fleet.extract import dps_time, record_fields, record_key, registration_fields

KEY = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItYmUtaW5kZXhlZC0wMDAwMDAwMDA="


def test_dps_times_with_seven_digits_and_without() -> None:
    assert dps_time("2026-12-03T07:09:03.1234567Z") == datetime(
        2026, 12, 3, 7, 9, 3, 123456, tzinfo=UTC
    )
    assert dps_time("2026-12-03T07:09:03Z") == datetime(2026, 12, 3, 7, 9, 3, tzinfo=UTC)
    assert dps_time("garbage") is None
    assert dps_time(None) is None


def test_enrollment_fields_and_no_key_material() -> None:
    doc = {
        "registrationId": "Dev-1",
        "deviceId": "dev-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY},
        },
        "capabilities": {"iotEdge": True},
        "initialTwin": {"tags": {"plant": "3"}, "properties": {"desired": {"fw": "2"}}},
        "etag": "abc",
        "provisioningStatus": "disabled",
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": True},
        "allocationPolicy": "static",
        "iotHubs": ["hub-1.azure-devices.net"],
        "lastUpdatedDateTimeUtc": "2026-12-03T07:09:03.5Z",
    }
    fields = record_fields("enrollment", doc)
    assert record_key("enrollment", doc) == "dev-1"
    assert fields["record_id"] == "Dev-1"
    assert fields["iot_edge"] is True
    assert fields["tags"] == {"plant": "3"}
    assert fields["desired"] == {"fw": "2"}
    assert fields["status"] == "disabled"
    assert fields["reprovision_update_hub"] is False
    assert fields["updated"] == datetime(2026, 12, 3, 7, 9, 3, 500000, tzinfo=UTC)
    assert KEY not in json.dumps(fields, default=str)


def test_x509_certificate_info_of_a_group() -> None:
    info = {
        "subjectName": "CN=root",
        "issuerName": "CN=root",
        "sha256Thumbprint": "AB" * 32,
        "notAfterUtc": "2027-01-01T00:00:00Z",
    }
    second = {**info, "notAfterUtc": "2026-12-24T00:00:00Z"}
    doc = {
        "enrollmentGroupId": "g1",
        "attestation": {
            "type": "x509",
            "x509": {
                "signingCertificates": {"primary": {"info": info}, "secondary": {"info": second}}
            },
        },
    }
    fields = record_fields("group", doc)
    assert fields["x509_kind"] == "signing"
    assert fields["cert_subject"] == "CN=root"
    assert fields["primary_thumbprint"] == "AB" * 32
    assert fields["cert_not_after"] == datetime(2026, 12, 24, tzinfo=UTC)  # the earlier one


def test_registration_fields() -> None:
    fields = registration_fields(
        {"registrationId": "d1", "status": "failed", "errorCode": 401002, "errorMessage": "no"},
        "g1",
    )
    assert fields["group_key"] == "g1"
    assert fields["error_code"] == 401002
    assert fields["status"] == "failed"
