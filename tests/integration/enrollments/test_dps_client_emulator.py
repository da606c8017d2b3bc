"""DpsClient against the running DPS emulator over HTTPS, signed with the owner policy's SAS.

Ids carry a random suffix, so the tests share the session's emulator without a reset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
import uuid
from typing import Any

import pytest
import requests

from enrollments.dps.auth import parse_connection_string, sas_token
from enrollments.dps.client import DpsClient, iterate_pages
from enrollments.dps.exceptions import (
    DpsConflict,
    DpsNotFound,
    DpsPreconditionFailed,
    DpsUnauthorized,
)
from enrollments.dps.types import (
    AttestationMechanism,
    DeviceCapabilities,
    EnrollmentGroup,
    IndividualEnrollment,
    InitialTwin,
    ReprovisionPolicy,
)
from enrollments.keys import derive_device_key, generate_symmetric_key
from enrollments.validation import parse_certificate
from tests.support.certs import self_signed_pem

# A TPM 2.0 endorsement key (public area) from the real recordings (API.md §14); its format
# matters little to DPS, which stores it as given.
ENDORSEMENT_KEY = (
    "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAibym9HQP9vxCGF5d"
    "Vc1QQsAGe021aUGJzNol1/gycBx3jFsTpwmWbISRwnFvflWd0w2Mc44FAAZNaJOAAxwZvG8GvyLlHh6fGKdh+mSBL4iLH2bZ"
    "4Ry22cB3CJVjXmdGoz9Y/j3/NwLndBxQC+baNvzvyVQZ4/A2YL7vzIIj2ik4y+ve9ir7U0GbNdnxskqK1KFIITVVtkTIYyyF"
    "TIR0BySjPrRIDj7r7Mh5uF9HBppGKKCMuUM0mzmSEuZcHcfUijnVj0/dwuyGZaDmY+G4g5S2OcYS3ANFxQYPAgWd8ic6iqH7"
    "CBEvv5RtG4Q5cnjC6P5cQ3sEnn3d0A4QnWb3SBDhTkndvfoL0PEH68ZIrQ=="
)


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def dps_entry(endpoints: dict[str, Any]) -> dict[str, Any]:
    return endpoints["dps"][0]


@pytest.fixture(scope="module")
def client(endpoints: dict[str, Any], dps_entry: dict[str, Any]) -> DpsClient:
    cs = parse_connection_string(dps_entry["connection_string"])
    return DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"], timeout=10)


def _individual(kind: str, registration_id: str) -> tuple[IndividualEnrollment, dict[str, Any]]:
    """Return an enrollment of attestation ``kind`` and what to check on it later."""
    expect: dict[str, Any] = {}
    if kind == "tpm":
        attestation = AttestationMechanism.for_tpm(ENDORSEMENT_KEY)
    elif kind == "x509":
        pem = self_signed_pem(registration_id)
        expect["thumbprint"] = parse_certificate(pem).sha1_thumbprint
        attestation = AttestationMechanism.for_x509_client_certificates(pem)
    elif kind == "symmetricKey-given":
        expect["keys"] = (generate_symmetric_key(), generate_symmetric_key(32))
        attestation = AttestationMechanism.for_symmetric_key(*expect["keys"])
    else:
        attestation = AttestationMechanism.for_symmetric_key()
    enrollment = IndividualEnrollment(
        registration_id=registration_id,
        device_id=f"device-{registration_id}",
        attestation=attestation,
        capabilities=DeviceCapabilities(iot_edge=True),
        initial_twin=InitialTwin.of(tags={"site": "ams"}, desired={"interval": 30}),
        provisioning_status="enabled",
        reprovision_policy=ReprovisionPolicy(update_hub_assignment=True, migrate_device_data=True),
        allocation_policy="hashed",
    )
    return enrollment, expect


@pytest.mark.parametrize("kind", ["tpm", "x509", "symmetricKey-given", "symmetricKey-generated"])
def test_individual_enrollment_lifecycle(client: DpsClient, kind: str) -> None:
    """Create, read, update with the etag, refuse a stale etag, delete, for each attestation."""
    registration_id = f"it-{kind.lower()}-{_suffix()}"
    enrollment, expect = _individual(kind, registration_id)

    created = client.enrollment_put(enrollment)
    assert created.registration_id == registration_id
    assert created.etag
    assert created.created_date_time_utc
    assert created.device_id == f"device-{registration_id}"

    fetched = client.enrollment_get(registration_id)
    assert fetched.etag == created.etag
    assert fetched.registration_state is not None
    assert fetched.registration_state.status == "unassigned"
    assert fetched.capabilities == DeviceCapabilities(iot_edge=True)
    assert fetched.initial_twin.tags == {"site": "ams"}
    assert fetched.initial_twin.desired == {"interval": 30}
    mechanism = client.enrollment_attestation_mechanism(registration_id)
    if kind == "tpm":
        assert fetched.attestation.tpm.endorsement_key == ENDORSEMENT_KEY
        assert mechanism.tpm.endorsement_key == ENDORSEMENT_KEY
    elif kind == "x509":
        info = fetched.attestation.x509.client_certificates.primary.info
        assert info.subject_name == f"CN={registration_id}"
        assert info.sha1_thumbprint.upper() == expect["thumbprint"]
        assert fetched.attestation.x509.client_certificates.primary.certificate is None
    else:
        # GET masks the keys; the attestation-mechanism call returns them.
        assert not (
            fetched.attestation.symmetric_key and fetched.attestation.symmetric_key.primary_key
        )
        assert mechanism.symmetric_key.primary_key
        assert mechanism.symmetric_key.secondary_key
        if "keys" in expect:
            assert (
                mechanism.symmetric_key.primary_key,
                mechanism.symmetric_key.secondary_key,
            ) == expect["keys"]

    # Without If-Match an existing record is not overwritten.
    with pytest.raises(DpsConflict):
        client.enrollment_put(enrollment)

    fetched.provisioning_status = "disabled"
    if kind.startswith("symmetricKey"):
        fetched.attestation = mechanism  # carry the keys, or DPS would generate new ones
    elif kind == "x509":
        # DPS returns only the certificate's info, so a replace sends the certificate again.
        fetched.attestation = enrollment.attestation
    updated = client.enrollment_put(fetched, if_match=fetched.etag)
    assert updated.provisioning_status == "disabled"
    assert updated.etag != created.etag
    assert updated.created_date_time_utc == created.created_date_time_utc
    if kind.startswith("symmetricKey"):
        kept = client.enrollment_attestation_mechanism(registration_id).symmetric_key
        assert (kept.primary_key, kept.secondary_key) == (
            mechanism.symmetric_key.primary_key,
            mechanism.symmetric_key.secondary_key,
        )

    fetched.provisioning_status = "enabled"
    with pytest.raises(DpsPreconditionFailed) as stale:
        client.enrollment_put(fetched, if_match=created.etag)
    assert stale.value.status == 412
    assert stale.value.after_retry is False
    assert client.enrollment_get(registration_id).provisioning_status == "disabled"

    with pytest.raises(DpsPreconditionFailed):
        client.enrollment_delete(registration_id, if_match=created.etag)
    client.enrollment_delete(registration_id, if_match=updated.etag)
    with pytest.raises(DpsNotFound) as missing:
        client.enrollment_get(registration_id)
    assert missing.value.error_code == 404201
    assert missing.value.tracking_id


@pytest.mark.parametrize("kind", ["x509-signing", "x509-ca-reference", "symmetricKey"])
def test_enrollment_group_lifecycle(client: DpsClient, kind: str) -> None:
    group_id = f"it-grp-{kind.lower()}-{_suffix()}"
    if kind == "x509-signing":
        attestation = AttestationMechanism.for_x509_signing_certificates(
            self_signed_pem(f"root-{group_id}", ca=True)
        )
    elif kind == "x509-ca-reference":
        attestation = AttestationMechanism.for_x509_ca_references("fleet-root-ca")
    else:
        attestation = AttestationMechanism.for_symmetric_key()
    group = EnrollmentGroup(
        enrollment_group_id=group_id,
        attestation=attestation,
        initial_twin=InitialTwin.of(tags={"fleet": "north"}),
        allocation_policy="hashed",
    )
    created = client.group_put(group)
    assert created.etag
    fetched = client.group_get(group_id)
    assert fetched.initial_twin.tags == {"fleet": "north"}
    assert fetched.attestation.type == attestation.type
    if kind == "x509-signing":
        info = fetched.attestation.x509.signing_certificates.primary.info
        assert info.subject_name == f"CN=root-{group_id}"
    if kind == "x509-ca-reference":
        assert fetched.attestation.x509.ca_references.primary == "fleet-root-ca"

    mechanism = client.group_attestation_mechanism(group_id)
    assert mechanism.type == attestation.type
    if kind == "symmetricKey":
        fetched.attestation = mechanism
    elif kind == "x509-signing":
        fetched.attestation = attestation  # DPS returns info only: send the certificate again

    with pytest.raises(DpsConflict):
        client.group_put(group)
    fetched.provisioning_status = "disabled"
    updated = client.group_put(fetched, if_match=fetched.etag)
    assert updated.etag != created.etag
    with pytest.raises(DpsPreconditionFailed):
        client.group_put(fetched, if_match=created.etag)
    with pytest.raises(DpsPreconditionFailed):
        client.group_delete(group_id, if_match=created.etag)
    client.group_delete(group_id, if_match=updated.etag)
    with pytest.raises(DpsNotFound) as missing:
        client.group_get(group_id)
    assert missing.value.error_code == 404204


def test_bulk_operations(client: DpsClient) -> None:
    """Create, repeat-create (per-item 409201), update with etags, delete: ten at most per call."""
    suffix = _suffix()
    items = [
        IndividualEnrollment(
            registration_id=f"it-bulk-{i}-{suffix}",
            attestation=AttestationMechanism.for_tpm(ENDORSEMENT_KEY),
        )
        for i in range(10)
    ]
    assert client.enrollment_bulk("create", items).is_successful

    again = client.enrollment_bulk("create", items[:2])
    assert not again.is_successful
    assert again.failed_ids() == {items[0].registration_id, items[1].registration_id}
    assert {e.error_code for e in again.errors} == {409201}

    current = [client.enrollment_get(e.registration_id) for e in items[:3]]
    for e in current:
        e.provisioning_status = "disabled"
        e.registration_state = None
    assert client.enrollment_bulk("updateIfMatchETag", current).is_successful
    assert client.enrollment_get(items[0].registration_id).provisioning_status == "disabled"

    stale = client.enrollment_bulk("updateIfMatchETag", current[:1])
    assert not stale.is_successful
    assert stale.errors[0].registration_id == items[0].registration_id

    with pytest.raises(ValueError, match="1 to 10 items"):
        client.enrollment_bulk("delete", [*items, items[0]])
    assert client.enrollment_bulk("delete", items).is_successful
    with pytest.raises(DpsNotFound):
        client.enrollment_get(items[5].registration_id)


def test_group_bulk(client: DpsClient) -> None:
    suffix = _suffix()
    groups = [
        EnrollmentGroup(
            enrollment_group_id=f"it-gbulk-{i}-{suffix}",
            attestation=AttestationMechanism.for_symmetric_key(),
        )
        for i in range(2)
    ]
    assert client.group_bulk("create", groups).is_successful
    result = client.group_bulk("create", groups)
    assert not result.is_successful
    assert {e.enrollment_group_id for e in result.errors} == {g.enrollment_group_id for g in groups}
    assert client.group_bulk("delete", groups).is_successful


def test_query_paging_follows_continuation(client: DpsClient) -> None:
    """25 enrollments read 10 at a time: every page ≤ 10, each enrollment seen exactly once."""
    suffix = _suffix()
    ids = [f"it-page-{i:02d}-{suffix}" for i in range(25)]
    items = [
        IndividualEnrollment(
            registration_id=r, attestation=AttestationMechanism.for_tpm(ENDORSEMENT_KEY)
        )
        for r in ids
    ]
    for start in range(0, 25, 10):
        assert client.enrollment_bulk("create", items[start : start + 10]).is_successful
    try:
        pages = list(
            iterate_pages(lambda token: client.enrollment_query(page_size=10, continuation=token))
        )
        assert all(len(p.items) <= 10 for p in pages)
        assert all(p.continuation_token for p in pages[:-1])
        assert pages[-1].continuation_token is None
        assert len(pages) >= 3
        seen = [e.registration_id for p in pages for e in p.items]
        assert len(seen) == len(set(seen))
        assert set(ids) <= set(seen)
        assert pages[0].item_type == "Enrollment"
    finally:
        for start in range(0, 25, 10):
            client.enrollment_bulk("delete", items[start : start + 10])


def _register_device(
    endpoints: dict[str, Any], dps_entry: dict[str, Any], registration_id: str, device_key: str
) -> requests.Response:
    """Register like a device SDK does: SAS over ``{idScope}/registrations/{id}`` with the derived key."""
    resource = f"{dps_entry['id_scope']}/registrations/{registration_id}"
    expiry = str(int(time.time()) + 600)
    encoded = urllib.parse.quote(resource, safe="")
    signature = base64.b64encode(
        hmac.new(
            base64.b64decode(device_key), f"{encoded}\n{expiry}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    auth = (
        f"SharedAccessSignature sr={encoded}&sig={urllib.parse.quote(signature, safe='')}"
        f"&se={expiry}&skn=registration"
    )
    with requests.Session() as session:
        session.trust_env = False
        return session.put(
            f"https://{dps_entry['host']}/{dps_entry['id_scope']}/registrations/{registration_id}/register",
            params={"api-version": "2021-06-01"},
            json={"registrationId": registration_id},
            headers={"Authorization": auth},
            verify=endpoints["ca_cert"],
            timeout=10,
        )


def test_group_keys_derived_device_registration_and_registration_records(
    client: DpsClient, endpoints: dict[str, Any], dps_entry: dict[str, Any]
) -> None:
    """A device signing with the key derived by enrollments.keys registers; its record is listed and deleted."""
    group_id = f"it-reg-grp-{_suffix()}"
    device_id = f"it-device-{_suffix()}"
    client.group_put(
        EnrollmentGroup(
            enrollment_group_id=group_id, attestation=AttestationMechanism.for_symmetric_key()
        )
    )
    try:
        assert client.registration_query_for_group(group_id).items == []
        keys = client.group_attestation_mechanism(group_id).symmetric_key
        device_key = derive_device_key(keys.primary_key, device_id)

        wrong = _register_device(
            endpoints, dps_entry, device_id, derive_device_key(keys.primary_key, "other")
        )
        assert wrong.status_code == 401
        registered = _register_device(endpoints, dps_entry, device_id, device_key)
        assert registered.status_code == 202, registered.text

        page = client.registration_query_for_group(group_id, page_size=10)
        assert [r.registration_id for r in page.items] == [device_id]
        assert page.item_type == "DeviceRegistration"
        state = client.registration_get(device_id)
        assert state.status == "assigned"
        assert state.assigned_hub in dps_entry["iot_hubs"]
        assert state.etag

        with pytest.raises(DpsPreconditionFailed):
            client.registration_delete(device_id, if_match=base64.b64encode(b'"stale"').decode())
        client.registration_delete(device_id, if_match=state.etag)
        with pytest.raises(DpsNotFound):
            client.registration_get(device_id)
        assert client.registration_query_for_group(group_id).items == []
        # The enrollment group outlives its registration records.
        assert client.group_get(group_id).enrollment_group_id == group_id
    finally:
        client.group_delete(group_id)


def test_wrong_key_is_unauthorized(endpoints: dict[str, Any], dps_entry: dict[str, Any]) -> None:
    cs = parse_connection_string(dps_entry["connection_string"])
    wrong_key = base64.b64encode(b"not the policy key at all").decode()
    client = DpsClient(
        cs.host,
        lambda: sas_token(cs.host, cs.policy_name, wrong_key, int(time.time()) + 600),
        ca_bundle=endpoints["ca_cert"],
    )
    with pytest.raises(DpsUnauthorized) as info:
        client.enrollment_query()
    assert info.value.status == 401
    assert wrong_key not in str(info.value)
    assert "sig=" not in str(info.value)


def test_untrusted_certificate_is_refused(dps_entry: dict[str, Any]) -> None:
    """Without the emulator's CA the TLS handshake fails: the client never trusts by accident."""
    from enrollments.dps.exceptions import DpsUnavailable

    cs = parse_connection_string(dps_entry["connection_string"])
    client = DpsClient(cs.host, cs.token_provider(), ca_bundle=True, max_retries=0)
    with pytest.raises(DpsUnavailable, match="TLS"):
        client.enrollment_query()
