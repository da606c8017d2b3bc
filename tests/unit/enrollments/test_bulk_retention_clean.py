"""What clearing a finished job's rows removes: attestation keys, nothing of the operator's."""

from __future__ import annotations

from enrollments.bulk.retention import _clean


def test_attestation_keys_go_and_the_rest_stays() -> None:
    payload = {
        "registrationId": "dev-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": "cHJpbWFyeQ==", "secondaryKey": "c2Vjb25kYXJ5"},
        },
        "initialTwin": {"tags": {"siteKey": "north", "apiKey": "not ours to judge"}},
        "provisioningStatus": "enabled",
    }
    clean = _clean(payload)
    assert clean["attestation"] == {"type": "symmetricKey"}
    assert clean["initialTwin"] == payload["initialTwin"]
    assert clean["provisioningStatus"] == "enabled"


def test_tpm_keys_go_as_audit_redaction_treats_them() -> None:
    clean = _clean({"attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQ=="}}})
    assert clean["attestation"] == {"type": "tpm", "tpm": {}}


def test_a_payload_without_attestation_is_left_alone() -> None:
    assert _clean({"registrationId": "x"}) == {"registrationId": "x"}
