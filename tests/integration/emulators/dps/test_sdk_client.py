"""The real ``azure-iot-deviceprovisioning`` client runs against the emulator over HTTPS.

Three credentials: the owner connection string (SAS, ``from_connection_string``), an
``AzureNamedKeyCredential`` with the endpoint URL (the SDK then signs the URL with its
scheme, API.md §2.1), and Entra tokens: ``ClientSecretCredential`` of the automation apps
against the Entra emulator, plus a small TokenCredential that signs with the emulator keys.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from emulators.common.context import DPS_AUDIENCE
from emulators.dps.sas import derive_device_key, generate_sas

DPS_SCOPE = "https://azure-devices-provisioning.net/.default"


class KeyStoreCredential:
    """A TokenCredential that mints v1 DPS tokens with the emulator's signing keys."""

    def __init__(self, emulators: Any, oid: str) -> None:
        self.emulators = emulators
        self.oid = oid
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes += scopes
        ctx = self.emulators.ctx
        now = int(time.time())
        claims = {
            "aud": DPS_AUDIENCE,
            "iss": ctx.v1_issuer,
            "oid": self.oid,
            "tid": ctx.tenant.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "ver": "1.0",
        }
        return AccessToken(ctx.keys.sign(claims, v1=True), now + 3600)


@pytest.fixture(scope="module")
def prod(endpoints: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in endpoints["dps"] if d["name"] == "dps-fleet-prod")


def _client(
    endpoints: dict[str, Any], prod: dict[str, Any], credential: Any = None
) -> DeviceProvisioningClient:
    kw = {"connection_verify": endpoints["ca_cert"], "retry_total": 0}
    if credential is None:
        return DeviceProvisioningClient.from_connection_string(prod["connection_string"], **kw)
    return DeviceProvisioningClient(f"https://{prod['host']}", credential, **kw)


def _app_credential(endpoints: dict[str, Any], name: str) -> ClientSecretCredential:
    app = next(a for a in endpoints["apps"] if a["name"] == name)
    return ClientSecretCredential(
        endpoints["tenant_id"],
        app["client_id"],
        app["client_secret"],
        authority=endpoints["entra_endpoint"],
        disable_instance_discovery=True,
        connection_verify=endpoints["ca_cert"],
    )


def _register_device(
    endpoints: dict[str, Any], prod: dict[str, Any], group_key: str, rid: str
) -> None:
    """Register a symmetric-key group device through the emulator's device API."""
    key = derive_device_key(group_key, rid)
    resource = f"{prod['id_scope']}/registrations/{rid}"
    resp = requests.put(
        f"https://{prod['host']}/{resource}/register?api-version=2021-06-01",
        json={"registrationId": rid},
        headers={"Authorization": generate_sas(resource, key)},
        verify=endpoints["ca_cert"],
        timeout=10,
    )
    assert resp.status_code in (200, 202), resp.text


def exercise(
    client: DeviceProvisioningClient, endpoints: dict[str, Any], prod: dict[str, Any]
) -> None:
    """Drive enrollments, groups, bulk and registration states through the SDK."""
    tag = uuid.uuid4().hex[:8]
    rid = f"sdk-{tag}"
    created = client.enrollment.create_or_update(
        rid, {"registrationId": rid, "attestation": {"type": "symmetricKey"}, "deviceId": rid}
    )
    assert created["attestation"]["symmetricKey"]["primaryKey"]
    with pytest.raises(ResourceExistsError):
        client.enrollment.create_or_update(
            rid, {"registrationId": rid, "attestation": {"type": "symmetricKey"}}
        )
    got = client.enrollment.get(rid)
    assert got["attestation"] == {"type": "symmetricKey"}
    assert got["registrationState"]["status"] == "unassigned"
    assert (
        client.enrollment.get_attestation_mechanism(rid)["symmetricKey"]
        == created["attestation"]["symmetricKey"]
    )
    updated = client.enrollment.create_or_update(
        rid,
        {
            "registrationId": rid,
            "attestation": {"type": "symmetricKey"},
            "provisioningStatus": "disabled",
        },
        if_match=created["etag"],
    )
    assert updated["etag"] != created["etag"]
    with pytest.raises(HttpResponseError) as stale:
        client.enrollment.delete(rid, if_match=created["etag"])
    assert stale.value.status_code == 412
    ids = {e["registrationId"] for e in client.enrollment.query({"query": "SELECT *"})}
    assert rid in ids
    bulk = client.enrollment.run_bulk_operation(
        {
            "mode": "create",
            "enrollments": [
                {"registrationId": f"{rid}-b{i}", "attestation": {"type": "symmetricKey"}}
                for i in range(3)
            ],
        }
    )
    assert bulk == {"errors": [], "isSuccessful": True}
    # Paging with a small page size follows x-ms-continuation to the end.
    paged = [e["registrationId"] for e in client.enrollment.query({"query": "SELECT *"}, top=2)]
    assert {f"{rid}-b{i}" for i in range(3)} <= set(paged)
    assert len(paged) == len(set(paged))
    client.enrollment.run_bulk_operation(
        {
            "mode": "delete",
            "enrollments": [
                {"registrationId": f"{rid}-b{i}", "attestation": {"type": "symmetricKey"}}
                for i in range(3)
            ],
        }
    )
    client.enrollment.delete(rid, if_match=updated["etag"])
    with pytest.raises(ResourceNotFoundError) as missing:
        client.enrollment.get(rid)
    assert missing.value.response.json()["errorCode"] == 404201

    gid = f"sdk-grp-{tag}"
    group = client.enrollment_group.create_or_update(
        gid, {"enrollmentGroupId": gid, "attestation": {"type": "symmetricKey"}}
    )
    assert client.enrollment_group.get(gid)["attestation"] == {"type": "symmetricKey"}
    assert gid in {
        g["enrollmentGroupId"] for g in client.enrollment_group.query({"query": "SELECT *"})
    }
    keys = client.enrollment_group.get_attestation_mechanism(gid)["symmetricKey"]
    assert keys == group["attestation"]["symmetricKey"]
    result = client.enrollment_group.run_bulk_operation(
        {
            "mode": "update",
            "enrollmentGroups": [
                {"enrollmentGroupId": gid, "attestation": {"type": "symmetricKey"}}
            ],
        }
    )
    assert result["errors"][0]["errorCode"] == 409202

    device = f"dev-{tag}"
    _register_device(endpoints, prod, keys["primaryKey"], device)
    state = client.device_registration_state.get(device)
    assert state["status"] == "assigned"
    assert [s["registrationId"] for s in client.device_registration_state.query(gid)] == [device]
    client.device_registration_state.delete(device, if_match=state["etag"])
    assert list(client.device_registration_state.query(gid)) == []
    with pytest.raises(ResourceNotFoundError):
        client.device_registration_state.get(device)
    client.enrollment_group.delete(gid)


def test_sdk_with_connection_string(endpoints: dict[str, Any], prod: dict[str, Any]) -> None:
    """from_connection_string (SAS with the owner policy) runs every operation group."""
    exercise(_client(endpoints, prod), endpoints, prod)


def test_sdk_with_named_key_credential(endpoints: dict[str, Any], prod: dict[str, Any]) -> None:
    """AzureNamedKeyCredential signs sr with the https:// endpoint; the emulator accepts it."""
    key = prod["connection_string"].split("SharedAccessKey=", 1)[1]
    client = _client(endpoints, prod, AzureNamedKeyCredential("provisioningserviceowner", key))
    exercise(client, endpoints, prod)
    wrong = base64.b64encode(b"w" * 32).decode()
    bad = _client(endpoints, prod, AzureNamedKeyCredential("provisioningserviceowner", wrong))
    with pytest.raises(ClientAuthenticationError):
        bad.enrollment.get("anything")


def test_sdk_with_entra_client_secret_credential(
    endpoints: dict[str, Any], prod: dict[str, Any]
) -> None:
    """The automation writer app (Data Contributor on prod) runs everything with Entra tokens."""
    exercise(
        _client(endpoints, prod, _app_credential(endpoints, "fleet-automation-writer")),
        endpoints,
        prod,
    )


def test_sdk_reader_app_reads_but_cannot_write(
    endpoints: dict[str, Any], prod: dict[str, Any]
) -> None:
    """The automation reader app (Data Reader) reads; writes and key reveals answer 403."""
    client = _client(endpoints, prod, _app_credential(endpoints, "fleet-automation-reader"))
    list(client.enrollment.query({"query": "SELECT *"}))
    with pytest.raises(HttpResponseError) as denied:
        client.enrollment.create_or_update(
            "rd-1", {"registrationId": "rd-1", "attestation": {"type": "tpm"}}
        )
    assert denied.value.status_code == 403
    assert denied.value.response.json()["errorCode"] == 403001
    with pytest.raises(HttpResponseError) as hidden:
        client.enrollment_group.get_attestation_mechanism("whatever")
    assert hidden.value.status_code == 403


def test_sdk_with_keystore_token_credential(
    emulators: Any, endpoints: dict[str, Any], prod: dict[str, Any]
) -> None:
    """A TokenCredential minting tokens with the emulator keys works for a contributor user."""
    dana = next(u for u in endpoints["users"] if u["username"].startswith("dana."))
    cred = KeyStoreCredential(emulators, dana["object_id"])
    exercise(_client(endpoints, prod, cred), endpoints, prod)
    assert cred.scopes
    assert set(cred.scopes) == {DPS_SCOPE}
