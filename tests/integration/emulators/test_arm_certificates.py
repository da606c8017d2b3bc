"""The ARM emulator's DPS certificates API, driven by Microsoft's management client and raw HTTP.

``IotDpsClient`` runs unchanged but for its endpoint, its credential and the emulator CA.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
import requests
from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.iothubprovisioningservices import IotDpsClient
from azure.mgmt.iothubprovisioningservices.models import (
    CertificateProperties,
    CertificateResponse,
    VerificationCodeRequest,
)

from tests.integration.emulators.conftest import ARM_SCOPE, Entra
from tests.support import certs

SUB = "61bbc72c-832c-469c-a36e-8c2fffbbc31c"
RG = "rg-iot-fleet"
DPS = "dps-fleet-prod"
API = "api-version=2022-02-05"


class StaticToken:
    """A TokenCredential handing out one access token obtained by the real sign-in flow."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes += scopes
        return AccessToken(self.token, int(time.time()) + 3000)


@pytest.fixture(scope="module")
def tokens(entra: Entra) -> dict[str, str]:
    who = ("carl.certadmin", "cora.certreader", "dana.contributor", "oscar.operator")
    return {w: entra.user_tokens(w, [ARM_SCOPE])["access_token"] for w in who}


def client(entra: Entra, token: str) -> IotDpsClient:
    return IotDpsClient(
        StaticToken(token),
        SUB,
        base_url=entra.endpoints["arm_endpoint"],
        connection_verify=entra.ca,
        retry_total=0,
    )


def cert_url(entra: Entra, name: str = "", op: str = "") -> str:
    base = (
        f"{entra.endpoints['arm_endpoint']}/subscriptions/{SUB}/resourceGroups/{RG}"
        f"/providers/Microsoft.Devices/provisioningServices/{DPS}/certificates"
    )
    return base + (f"/{name}" if name else "") + (f"/{op}" if op else "") + f"?{API}"


def upload(entra: Entra, token: str, name: str, b64: str, **props: Any) -> requests.Response:
    return entra.http.put(
        cert_url(entra, name),
        json={"properties": {"certificate": b64, **props}},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_sdk_runs_the_whole_proof_of_possession_flow(entra: Entra, tokens: dict[str, str]) -> None:
    sdk = client(entra, tokens["carl.certadmin"])
    ca = certs.ca("SDK Flow Root CA")
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    created = sdk.dps_certificate.create_or_update(
        RG,
        DPS,
        name,
        CertificateResponse(
            properties=CertificateProperties(certificate=certs.pem(ca.cert).encode())
        ),
    )
    assert created.name == name
    assert created.type == "Microsoft.Devices/provisioningServices/certificates"
    assert created.properties.subject == "CN=SDK Flow Root CA"
    assert created.properties.is_verified is False
    assert len(created.properties.thumbprint) == 40
    assert created.properties.expiry.year >= 2026  # RFC 7231 date parsed by the SDK
    listed = sdk.dps_certificate.list(RG, DPS)
    assert name in [c.name for c in listed.value]

    code = sdk.dps_certificate.generate_verification_code(
        name, RG, DPS, etag=created.etag, match_condition=MatchConditions.IfNotModified
    )
    assert code.etag != created.etag
    proof = certs.verification(ca, code.properties.verification_code)
    verified = sdk.dps_certificate.verify_certificate(
        name,
        RG,
        DPS,
        VerificationCodeRequest(certificate=certs.pem(proof.cert)),
        etag=code.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    assert verified.properties.is_verified is True
    got = sdk.dps_certificate.get(name, RG, DPS)
    assert got.properties.is_verified is True
    assert got.etag == verified.etag

    sdk.dps_certificate.delete(
        RG, DPS, name, etag=got.etag, match_condition=MatchConditions.IfNotModified
    )
    with pytest.raises(ResourceNotFoundError):
        sdk.dps_certificate.get(name, RG, DPS)


def test_sdk_sees_the_error_details_of_a_wrong_proof(entra: Entra, tokens: dict[str, str]) -> None:
    sdk = client(entra, tokens["carl.certadmin"])
    ca, other = certs.ca("Wrong Proof CA"), certs.ca("Another CA")
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    created = sdk.dps_certificate.create_or_update(
        RG,
        DPS,
        name,
        CertificateResponse(properties=CertificateProperties(certificate=certs.der(ca.cert))),
    )
    code = sdk.dps_certificate.generate_verification_code(
        name, RG, DPS, etag=created.etag, match_condition=MatchConditions.IfNotModified
    )
    forged = certs.verification(other, code.properties.verification_code)
    with pytest.raises(HttpResponseError) as err:
        sdk.dps_certificate.verify_certificate(
            name,
            RG,
            DPS,
            VerificationCodeRequest(certificate=certs.pem(forged.cert)),
            etag=code.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert err.value.status_code == 400
    assert "signed by the private key" in str(err.value)
    assert sdk.dps_certificate.get(name, RG, DPS).properties.is_verified is False


def test_wrong_code_refused_and_nothing_changes(entra: Entra, tokens: dict[str, str]) -> None:
    token = tokens["carl.certadmin"]
    auth = {"Authorization": f"Bearer {token}"}
    ca = certs.ca("Wrong Code CA")
    name = f"raw-{uuid.uuid4().hex[:8]}"
    etag = upload(entra, token, name, certs.pem_b64(ca.cert)).json()["etag"]
    r = entra.http.post(
        cert_url(entra, name, "generateVerificationCode"), headers={**auth, "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    etag = r.json()["etag"]
    proof = certs.verification(ca, "0" * 48)
    r = entra.http.post(
        cert_url(entra, name, "verify"),
        json={"certificate": certs.pem(proof.cert)},
        headers={**auth, "If-Match": etag},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["httpStatusCode"] == "BadRequest"
    assert "not the verification code" in body["message"]
    now = entra.http.get(cert_url(entra, name), headers=auth).json()
    assert now["etag"] == etag
    assert now["properties"]["isVerified"] is False


def test_verify_before_a_code_is_refused(entra: Entra, tokens: dict[str, str]) -> None:
    token = tokens["carl.certadmin"]
    ca = certs.ca("No Code CA")
    name = f"raw-{uuid.uuid4().hex[:8]}"
    etag = upload(entra, token, name, certs.pem_b64(ca.cert)).json()["etag"]
    r = entra.http.post(
        cert_url(entra, name, "verify"),
        json={"certificate": certs.pem(certs.verification(ca, "ABC").cert)},
        headers={"Authorization": f"Bearer {token}", "If-Match": etag},
    )
    assert r.status_code == 400
    assert "generate one first" in r.json()["message"]


def test_etags_guard_update_and_delete(entra: Entra, tokens: dict[str, str]) -> None:
    token = tokens["carl.certadmin"]
    auth = {"Authorization": f"Bearer {token}"}
    name = f"raw-{uuid.uuid4().hex[:8]}"
    first = upload(entra, token, name, certs.pem_b64(certs.ca("Etag CA").cert)).json()
    # Update without If-Match, and delete with a stale or missing ETag: 412, nothing changed.
    assert upload(entra, token, name, certs.pem_b64(certs.ca("Etag CA 2").cert)).status_code == 412
    for headers in ({**auth}, {**auth, "If-Match": "AAAAAAAAAAA="}):
        r = entra.http.delete(cert_url(entra, name), headers=headers)
        assert r.status_code == 412, r.text
        assert r.json()["httpStatusCode"] == "PreconditionFailed"
    assert entra.http.get(cert_url(entra, name), headers=auth).json()["etag"] == first["etag"]
    r = entra.http.put(
        cert_url(entra, name),
        json={
            "properties": {
                "certificate": certs.pem_b64(certs.ca("Etag CA 3").cert),
                "isVerified": True,
            }
        },
        headers={**auth, "If-Match": first["etag"]},
    )
    assert r.status_code == 200
    assert r.json()["properties"]["subject"] == "CN=Etag CA 3"
    assert r.json()["properties"]["isVerified"] is True
    r = entra.http.delete(cert_url(entra, name), headers={**auth, "If-Match": r.json()["etag"]})
    assert r.status_code == 200
    assert entra.http.get(cert_url(entra, name), headers=auth).status_code == 404


def test_upload_parses_pem_text_der_and_refuses_garbage(
    entra: Entra, tokens: dict[str, str]
) -> None:
    token = tokens["carl.certadmin"]
    ca = certs.ca("Formats CA")
    name = f"raw-{uuid.uuid4().hex[:8]}"
    der = base64.b64encode(certs.der(ca.cert)).decode()
    r = upload(entra, token, name, der, isVerified=True)
    assert r.status_code == 200
    props = r.json()["properties"]
    assert props["isVerified"] is True
    assert props["expiry"].endswith("GMT")
    assert len(props["thumbprint"]) == 40
    r = upload(entra, token, f"raw-{uuid.uuid4().hex[:8]}", base64.b64encode(b"nope").decode())
    assert r.status_code == 400
    assert "could not be parsed" in r.json()["message"]
    r = upload(entra, token, "bad name!", der)
    assert r.status_code in (400, 404)


def test_leaf_and_expired_certificates_are_accepted_as_the_portal_decides(
    entra: Entra, tokens: dict[str, str]
) -> None:
    # The emulator accepts them (unconfirmed whether the real service refuses); the portal refuses.
    token = tokens["carl.certadmin"]
    leaf = certs.certificate("just-a-device")
    assert (
        upload(entra, token, f"raw-{uuid.uuid4().hex[:8]}", certs.pem_b64(leaf.cert)).status_code
        == 200
    )
    old = certs.ca("Expired CA", expired=True)
    assert (
        upload(entra, token, f"raw-{uuid.uuid4().hex[:8]}", certs.pem_b64(old.cert)).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("who", "method", "op", "allowed"),
    [
        ("cora.certreader", "GET", "", True),
        ("cora.certreader", "PUT", "x", False),
        ("cora.certreader", "DELETE", "x", False),
        ("cora.certreader", "POST", "x/generateVerificationCode", False),
        ("cora.certreader", "POST", "x/verify", False),
        ("dana.contributor", "GET", "", False),  # data-plane roles grant no control actions
        ("dana.contributor", "PUT", "x", False),
        ("oscar.operator", "GET", "", True),  # Reader: */read
        ("oscar.operator", "PUT", "x", False),
    ],
)
def test_control_actions_decide(
    entra: Entra, tokens: dict[str, str], who: str, method: str, op: str, allowed: bool
) -> None:
    name, _, operation = op.partition("/")
    r = entra.http.request(
        method,
        cert_url(entra, name, operation),
        json={"properties": {"certificate": ""}} if method == "PUT" else None,
        headers={"Authorization": f"Bearer {tokens[who]}", "If-Match": "*"},
    )
    if allowed:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "AuthorizationFailed"
        assert "Microsoft.Devices/provisioningServices/certificates/" in error["message"]


def test_dps_resource_carries_linked_hubs_without_keys(
    entra: Entra, tokens: dict[str, str]
) -> None:
    sdk = client(entra, tokens["carl.certadmin"])
    res = sdk.iot_dps_resource.get(DPS, RG)
    hubs = {h.name: h for h in res.properties.iot_hubs}
    assert set(hubs) == {"hub-fleet-weu.azure-devices.net", "hub-fleet-neu.azure-devices.net"}
    weu = hubs["hub-fleet-weu.azure-devices.net"]
    assert weu.location == "westeurope"
    assert weu.allocation_weight == 2
    assert weu.apply_allocation_policy is True
    assert weu.connection_string.endswith("SharedAccessKey=****")
