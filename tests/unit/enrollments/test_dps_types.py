"""The DPS models read and write every recorded body of the real service without loss."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enrollments.dps.types import (
    AttestationMechanism,
    BulkEnrollmentOperationResult,
    DeviceRegistrationState,
    DpsModel,
    EnrollmentGroup,
    IndividualEnrollment,
    InitialTwin,
    ReprovisionPolicy,
    X509CertificateInfo,
    parse_dps_datetime,
)


def _bodies(reference_dir: Path) -> list[tuple[str, type[DpsModel], Any]]:
    """Return (label, model, body) for each enrollment, group, registration, attestation and bulk body."""
    out: list[tuple[str, type[DpsModel], Any]] = []
    for label, route, method, key, body in _recorded_bodies(reference_dir):
        model = _model_for(route, method, key, body)
        if model is None:
            continue
        items = body if isinstance(body, list) else [body]
        out.extend((f"{label} {key}", model, item) for item in items)
        if key == "RequestBody" and isinstance(body, dict) and "mode" in body:
            inner = IndividualEnrollment if "enrollments" in body else EnrollmentGroup
            for item in body.get("enrollments") or body.get("enrollmentGroups") or []:
                out.append((f"{label} bulk item", inner, item))
    return out


def _recorded_bodies(reference_dir: Path) -> Iterator[tuple[str, str, str, str, Any]]:
    """Yield (label, route, method, key, body) for each non-empty body of a DPS call recorded."""
    for path in sorted((reference_dir / "dps-service" / "recordings").glob("*.json")):
        entries = json.loads(path.read_text())["Entries"]
        for n, entry in enumerate(entries):
            uri = entry["RequestUri"]
            if "azure-devices-provisioning.net" not in uri:
                continue
            route = uri.split(".net", 1)[1].split("?", 1)[0]
            method = entry["RequestMethod"]
            label = f"{path.stem[:40]}#{n} {method} {route[:40]}"
            for key in ("RequestBody", "ResponseBody"):
                body = entry.get(key)
                if isinstance(body, str) and body.startswith("["):
                    body = json.loads(body)  # query responses are stored as a string
                if body:
                    yield label, route, method, key, body


def _model_for(route: str, method: str, key: str, body: Any) -> type[DpsModel] | None:
    parts = route.strip("/").split("/")
    kind = parts[0].lower()
    if route.endswith("/attestationmechanism"):
        return AttestationMechanism if key == "ResponseBody" else None
    if route.endswith("/query"):
        if key == "RequestBody":
            return None
        return {"enrollments": IndividualEnrollment, "enrollmentgroups": EnrollmentGroup}.get(
            kind, DeviceRegistrationState
        )
    if len(parts) == 1 and method == "POST":  # bulk
        return BulkEnrollmentOperationResult if key == "ResponseBody" else None
    return {
        "enrollments": IndividualEnrollment,
        "enrollmentgroups": EnrollmentGroup,
        "registrations": DeviceRegistrationState,
    }.get(kind)


def test_every_recorded_body_round_trips(reference_dir: Path) -> None:
    """Each body parses into its model and serialises back to the same JSON."""
    bodies = _bodies(reference_dir)
    kinds = {model.__name__ for _, model, _ in bodies}
    assert kinds == {
        "IndividualEnrollment",
        "EnrollmentGroup",
        "DeviceRegistrationState",
        "AttestationMechanism",
        "BulkEnrollmentOperationResult",
    }
    assert len(bodies) > 300  # the paging recording alone holds 150 PUT bodies and responses
    mismatched = [label for label, model, body in bodies if model.from_json(body).to_json() != body]
    assert mismatched == []


def test_recorded_values_land_in_typed_fields(reference_dir: Path) -> None:
    """The typed attributes (not only ``extra``) hold what DPS sent."""
    bodies = _bodies(reference_dir)
    extras = [(label, model.from_json(body).extra) for label, model, body in bodies]
    # The only unknown key anywhere is the SDK's "additionalProperties" inside a free-form
    # TwinCollection, which is a plain dict, so no model needs ``extra`` for real traffic.
    assert [label for label, extra in extras if extra] == []
    x509_group = next(
        EnrollmentGroup.from_json(body)
        for _, model, body in bodies
        if model is EnrollmentGroup
        and body.get("attestation", {}).get("type") == "x509"
        and "etag" in body
    )
    info = x509_group.attestation.x509.signing_certificates.primary.info
    assert isinstance(info, X509CertificateInfo)
    assert info.subject_name.startswith("CN=")
    assert info.version == 3
    assert (
        x509_group.attestation.x509.signing_certificates.secondary.info.subject_name
        == info.subject_name
    )


def test_explicit_null_survives_and_absent_stays_absent() -> None:
    body = {
        "enrollmentGroupId": "g",
        "attestation": {"type": "symmetricKey"},
        "provisioningStatus": None,
    }
    group = EnrollmentGroup.from_json(body)
    assert group.provisioning_status is None
    assert group.to_json() == body
    assert "reprovisionPolicy" not in group.to_json()
    group.provisioning_status = "disabled"
    assert group.to_json()["provisioningStatus"] == "disabled"


def test_unknown_fields_are_kept() -> None:
    """A field DPS adds later (e.g. credentialPolicyName of 2025 previews) is not lost."""
    body = {
        "registrationId": "r",
        "attestation": {"type": "tpm", "tpm": {"endorsementKey": "ek", "futureKey": 1}},
        "credentialPolicyName": "p",
        "capabilities": {"iotEdge": False, "newCapability": True},
    }
    enrollment = IndividualEnrollment.from_json(body)
    assert enrollment.extra == {"credentialPolicyName": "p"}
    assert enrollment.to_json() == body


def test_missing_required_field_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="IndividualEnrollment"):
        IndividualEnrollment.from_json({"attestation": {"type": "none"}})
    with pytest.raises(ValueError, match="expected a JSON object"):
        IndividualEnrollment.from_json(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a JSON array"):
        BulkEnrollmentOperationResult.from_json({"isSuccessful": True, "errors": {}})


def test_constructors_produce_dps_json() -> None:
    assert AttestationMechanism.for_x509_ca_references("root-ca").to_json() == {
        "type": "x509",
        "x509": {"caReferences": {"primary": "root-ca"}},
    }
    assert AttestationMechanism.for_x509_client_certificates("PEM1", "PEM2").to_json() == {
        "type": "x509",
        "x509": {
            "clientCertificates": {
                "primary": {"certificate": "PEM1"},
                "secondary": {"certificate": "PEM2"},
            }
        },
    }
    assert AttestationMechanism.for_x509_signing_certificates("PEM").to_json() == {
        "type": "x509",
        "x509": {"signingCertificates": {"primary": {"certificate": "PEM"}}},
    }
    assert AttestationMechanism.for_tpm("ek", "srk").to_json() == {
        "type": "tpm",
        "tpm": {"endorsementKey": "ek", "storageRootKey": "srk"},
    }
    assert InitialTwin.of(tags={"a": 1}).to_json() == {"tags": {"a": 1}}
    assert ReprovisionPolicy(update_hub_assignment=True, migrate_device_data=False).to_json() == {
        "updateHubAssignment": True,
        "migrateDeviceData": False,
    }


def test_to_json_returns_copies() -> None:
    """Changing the returned JSON does not change the model."""
    enrollment = IndividualEnrollment(
        registration_id="r",
        attestation=AttestationMechanism(type="none"),
        initial_twin=InitialTwin.of(tags={"a": {"b": 1}}),
    )
    enrollment.to_json()["initialTwin"]["tags"]["a"]["b"] = 2
    assert enrollment.initial_twin.tags == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-19T23:10:45.1256254Z", datetime(2023, 5, 19, 23, 10, 45, 125625, tzinfo=UTC)),
        ("2023-05-19T23:10:35Z", datetime(2023, 5, 19, 23, 10, 35, tzinfo=UTC)),
        ("2023-05-19T23:10:47.686968Z", datetime(2023, 5, 19, 23, 10, 47, 686968, tzinfo=UTC)),
        ("2023-05-19T23:10:47.5+00:00", datetime(2023, 5, 19, 23, 10, 47, 500000, tzinfo=UTC)),
        (None, None),
    ],
)
def test_parse_dps_datetime(text: str | None, expected: datetime | None) -> None:
    assert parse_dps_datetime(text) == expected
