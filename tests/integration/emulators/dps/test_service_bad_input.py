"""Bad input gets a specific 4xx in DPS's error shape, never a 500 or a traceback."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from emulators.dps.service import Limits
from tests.integration.emulators.dps.conftest import LOCAL_HOST, Dps, sas_token

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def assert_error(resp: Any, status: int, code: int | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    body = resp.json()
    assert body["errorCode"] // 1000 == status
    assert resp.headers["x-ms-error-code"] == str(body["errorCode"])
    assert "Traceback" not in resp.text
    if code is not None:
        assert body["errorCode"] == code, body
    return body


def sym(rid: str, **extra: Any) -> dict[str, Any]:
    return {"registrationId": rid, "attestation": {"type": "symmetricKey"}, **extra}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", 400001),
        (b"[1, 2]", 400001),
        (b'"text"', 400001),
        (b"\xff\xfe\x00", 400001),
        (b'{"registrationId": NaN}', 400001),
        (b"[" * 100_000, 413001),
    ],
)
def test_malformed_bodies_are_rejected(dps: Dps, raw: bytes, code: int) -> None:
    """Bodies that are not one JSON object answer 400 (or 413 when oversized)."""
    resp = dps.call("PUT", "/enrollments/d1", raw=raw, headers={"Content-Type": "application/json"})
    assert_error(resp, code // 1000, code)


def test_deeply_nested_json_is_a_400_not_a_crash(dps: Dps) -> None:
    """JSON nested deeper than the parser allows is a bad body."""
    raw = ("[" * 50_000 + "]" * 50_000).encode()[: 90 * 1024]
    assert_error(dps.call("PUT", "/enrollments/d1", raw=raw), 400)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"registrationId": 5, "attestation": {"type": "tpm"}}, 400003),
        (sym("d1", deviceId=7), 400002),
        (sym("d1", capabilities={"iotEdge": "yes"}), 400002),
        (sym("d1", capabilities=[]), 400002),
        (sym("d1", provisioningStatus="paused"), 400002),
        (sym("d1", allocationPolicy="random"), 400002),
        (sym("d1", allocationPolicy="custom"), 400002),
        (sym("d1", iotHubs="hub"), 400002),
        (sym("d1", iotHubs=["unknown-hub.azure-devices.net"]), 400002),
        (sym("d1", reprovisionPolicy={"updateHubAssignment": 1}), 400002),
        (sym("d1", initialTwin={"properties": {"desired": []}}), 400002),
        (
            sym(
                "d1",
                customAllocationDefinition={"webhookUrl": "not a url", "apiVersion": "2019-03-31"},
            ),
            400002,
        ),
        (
            sym(
                "d1",
                customAllocationDefinition={
                    "webhookUrl": "https://a.b",
                    "apiVersion": "2017-01-01",
                },
            ),
            400002,
        ),
        ({"registrationId": "d1"}, 400004),
        ({"registrationId": "d1", "attestation": "tpm"}, 400002),
        ({"registrationId": "d1", "attestation": {"type": "magic"}}, 400004),
        ({"registrationId": "d1", "attestation": {"type": "none"}}, 400004),
        ({"registrationId": "d1", "attestation": {"type": "tpm"}}, 400002),
        (
            {
                "registrationId": "d1",
                "attestation": {"type": "tpm", "tpm": {"endorsementKey": "!!"}},
            },
            400004,
        ),
        (
            {
                "registrationId": "d1",
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "short"}},
            },
            400004,
        ),
        (
            {
                "registrationId": "d1",
                "attestation": {
                    "type": "symmetricKey",
                    "symmetricKey": {"primaryKey": base64.b64encode(b"x" * 8).decode()},
                },
            },
            400004,
        ),
        (
            {
                "registrationId": "d1",
                "attestation": {
                    "type": "x509",
                    "x509": {
                        "clientCertificates": {
                            "primary": {
                                "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
                            }
                        }
                    },
                },
            },
            400004,
        ),
        (
            {
                "registrationId": "d1",
                "attestation": {
                    "type": "x509",
                    "x509": {
                        "clientCertificates": {"primary": {"certificate": "bm90IGEgY2VydA=="}}
                    },
                },
            },
            400004,
        ),
        (
            {
                "registrationId": "d1",
                "attestation": {"type": "x509", "x509": {"signingCertificates": {}}},
            },
            400004,
        ),
        ({"registrationId": "other", "attestation": {"type": "symmetricKey"}}, 400007),
    ],
)
def test_invalid_enrollments_get_specific_400s(dps: Dps, body: dict[str, Any], code: int) -> None:
    """Wrong types, unknown attestation types, broken PEM, bad keys: 400 with a sub-code."""
    assert_error(dps.call("PUT", "/enrollments/d1", body=body), 400, code)
    assert dps.store.get_enrollment("d1") is None


@pytest.mark.parametrize(
    "rid",
    [
        "-starts-with-dash",
        "ends.with.dot.",
        "has space",
        "a" * 129,
        "semi;colon",
        "slash%2Fid",
        "ünï",
    ],
)
def test_invalid_registration_ids_are_rejected(dps: Dps, rid: str) -> None:
    """Ids outside the documented grammar are refused before anything is stored."""
    resp = dps.call("PUT", f"/enrollments/{rid}", body=sym(rid))
    assert resp.status_code in (400, 404), resp.text
    assert_error(resp, resp.status_code)
    assert dps.store.count_enrollments() == 0


def test_invalid_group_id_is_rejected(dps: Dps) -> None:
    body = {"enrollmentGroupId": "bad id", "attestation": {"type": "symmetricKey"}}
    assert_error(dps.call("PUT", "/enrollmentGroups/bad%20id", body=body), 400, 400003)


def test_longest_valid_registration_id_is_accepted(dps: Dps) -> None:
    rid = "a" * 127 + "-"
    assert dps.call("PUT", f"/enrollments/{rid}", body=sym(rid)).status_code == 200


def test_bulk_limits_and_modes(dps: Dps) -> None:
    """Bulk of 11 → 400; unknown mode → 400; empty list → 400; per-item errors stay 200."""
    eleven = [sym(f"b{i}") for i in range(11)]
    assert_error(
        dps.call("POST", "/enrollments", body={"mode": "create", "enrollments": eleven}),
        400,
        400005,
    )
    assert dps.store.count_enrollments() == 0
    assert_error(
        dps.call("POST", "/enrollments", body={"mode": "merge", "enrollments": eleven[:2]}),
        400,
        400005,
    )
    assert_error(
        dps.call("POST", "/enrollments", body={"mode": "create", "enrollments": []}), 400, 400005
    )
    assert_error(
        dps.call("POST", "/enrollments", body={"mode": "create", "enrollments": [{"x": 1}]}),
        400,
        400001,
    )
    mixed = [
        sym("ok-1"),
        {"registrationId": "bad-1", "attestation": {"type": "magic"}},
        sym("bad id"),
    ]
    resp = dps.call("POST", "/enrollments", body={"mode": "create", "enrollments": mixed})
    assert resp.status_code == 200
    body = resp.json()
    assert body["isSuccessful"] is False
    assert [(e["registrationId"], e["errorCode"]) for e in body["errors"]] == [
        ("bad-1", 400004),
        ("bad id", 400003),
    ]
    assert dps.store.get_enrollment("ok-1") is not None


def test_bulk_update_and_if_match_modes(dps: Dps) -> None:
    """update: no etag on an existing item is 409201; updateIfMatchETag needs a matching etag."""
    created = dps.call("PUT", "/enrollments/u1", body=sym("u1")).json()
    no_etag = dps.call(
        "POST", "/enrollments", body={"mode": "update", "enrollments": [sym("u1")]}
    ).json()
    assert no_etag["errors"][0]["errorCode"] == 409201
    with_etag = dps.call(
        "POST",
        "/enrollments",
        body={"mode": "update", "enrollments": [sym("u1", etag=created["etag"])]},
    ).json()
    assert with_etag == {"errors": [], "isSuccessful": True}
    stale = dps.call(
        "POST",
        "/enrollments",
        body={"mode": "updateIfMatchETag", "enrollments": [sym("u1", etag=created["etag"])]},
    ).json()
    assert stale["errors"][0]["errorCode"] == 412001
    missing = dps.call(
        "POST",
        "/enrollments",
        body={"mode": "updateIfMatchETag", "enrollments": [sym("zz", etag="*")]},
    ).json()
    assert missing["errors"][0]["errorCode"] == 404201
    deleted = dps.call(
        "POST", "/enrollments", body={"mode": "delete", "enrollments": [sym("u1"), sym("u2")]}
    ).json()
    assert [(e["registrationId"], e["errorCode"]) for e in deleted["errors"]] == [("u2", 404201)]
    assert dps.store.get_enrollment("u1") is None


def test_oversized_body_is_413(dps: Dps) -> None:
    big = sym("d1", optionalDeviceInformation={"blob": {"x": "a" * (97 * 1024)}})
    assert_error(dps.call("PUT", "/enrollments/d1", body=big), 413, 413001)


def test_oversized_body_without_content_length_is_413(dps: Dps) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"a" * 1024

    resp = dps.client.request(
        "PUT", "/enrollments/d1?api-version=2021-10-01", content=chunks(), headers=dps.owner_sas()
    )
    assert_error(resp, 413, 413001)


def test_wrong_media_type_is_415(dps: Dps) -> None:
    resp = dps.call(
        "PUT",
        "/enrollments/d1",
        raw=json.dumps(sym("d1")).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert_error(resp, 415, 415001)


@pytest.mark.parametrize(
    ("query", "code"), [("", 400006), ("api-version=2019-01-01", 400006), ("x=1", 400006)]
)
def test_api_version_is_required(dps: Dps, query: str, code: int) -> None:
    assert_error(dps.call("GET", "/enrollments/d1", query=query), 400, code)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/enrollments/d1", "GET, PUT, DELETE"),
        ("POST", "/enrollments/d1", "GET, PUT, DELETE"),
        ("GET", "/enrollments", "POST"),
        ("GET", "/enrollments/d1/attestationmechanism", "POST"),
        ("PUT", "/registrations/d1", "GET, DELETE"),
        ("GET", "/registrations/g1/query", "POST"),
        ("OPTIONS", "/enrollmentGroups", "POST"),
    ],
)
def test_wrong_method_is_405(dps: Dps, method: str, path: str, allow: str) -> None:
    resp = dps.call(method, path)
    assert_error(resp, 405, 405001)
    assert resp.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/", "/devices/x", "/enrollments/a/b", "/registrations/a/b/c"])
def test_unknown_paths_are_404(dps: Dps, path: str) -> None:
    assert_error(dps.call("GET", path), 404, 404001)


def test_paths_match_case_insensitively(dps: Dps) -> None:
    dps.call(
        "PUT",
        "/enrollmentGroups/G1",
        body={"enrollmentGroupId": "G1", "attestation": {"type": "symmetricKey"}},
    )
    assert dps.call("POST", "/ENROLLMENTGROUPS/g1/AttestationMechanism").status_code == 200
    assert (
        dps.call("POST", "/enrollmentgroups/query", body={"query": "select *"}).status_code == 200
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-ms-max-item-count": "abc"}, 400008),
        ({"x-ms-max-item-count": "0"}, 400008),
        ({"x-ms-continuation": "not-a-token"}, 400008),
        ({"x-ms-continuation": base64.b64encode(b'[{"token":"x"}]').decode()}, 400008),
    ],
)
def test_bad_paging_headers_are_400(dps: Dps, headers: dict[str, str], code: int) -> None:
    assert_error(
        dps.call("POST", "/enrollments/query", body={"query": "*"}, headers=headers), 400, code
    )


def test_query_needs_a_query_string(dps: Dps) -> None:
    assert_error(dps.call("POST", "/enrollments/query", body={"q": 1}), 400, 400002)
    assert_error(dps.call("POST", "/enrollments/query"), 400, 400001)


def test_page_size_is_capped_and_paging_is_complete(dps: Dps) -> None:
    """x-ms-max-item-count above 1000 is capped; following tokens visits every record once."""
    for start in range(0, 25, 10):
        items = [sym(f"p{i:03d}") for i in range(start, min(start + 10, 25))]
        assert dps.call(
            "POST", "/enrollments", body={"mode": "create", "enrollments": items}
        ).json()["isSuccessful"]
    seen: list[str] = []
    token = None
    while True:
        headers = {"x-ms-max-item-count": "7"}
        if token:
            headers["x-ms-continuation"] = token
        resp = dps.call("POST", "/enrollments/query", body={"query": "SELECT *"}, headers=headers)
        assert resp.headers["x-ms-item-type"] == "Enrollment"
        seen += [d["registrationId"] for d in resp.json()]
        assert all("symmetricKey" not in d["attestation"] for d in resp.json())
        token = resp.headers.get("x-ms-continuation")
        if not token:
            break
    assert seen == [f"p{i:03d}" for i in range(25)]
    big = dps.call(
        "POST", "/enrollments/query", body={"query": "*"}, headers={"x-ms-max-item-count": "5000"}
    )
    assert len(big.json()) == 25
    assert "x-ms-continuation" not in big.headers


def test_limits_are_enforced(make_dps: Any) -> None:
    """The enrollment limit and the per-attestation group limit answer 403002."""
    dps = make_dps(limits=Limits(max_enrollments=2, max_groups_per_attestation=1))
    assert dps.call("PUT", "/enrollments/a", body=sym("a")).status_code == 200
    assert dps.call("PUT", "/enrollments/b", body=sym("b")).status_code == 200
    assert_error(dps.call("PUT", "/enrollments/c", body=sym("c")), 403, 403002)
    bulk = dps.call(
        "POST", "/enrollments", body={"mode": "create", "enrollments": [sym("c")]}
    ).json()
    assert bulk["errors"][0]["errorCode"] == 403002
    # Replacing an existing enrollment is not a new one.
    assert (
        dps.call("PUT", "/enrollments/a", body=sym("a"), headers={"If-Match": "*"}).status_code
        == 200
    )
    group = {"enrollmentGroupId": "g1", "attestation": {"type": "symmetricKey"}}
    assert dps.call("PUT", "/enrollmentGroups/g1", body=group).status_code == 200
    group2 = {"enrollmentGroupId": "g2", "attestation": {"type": "symmetricKey"}}
    assert_error(dps.call("PUT", "/enrollmentGroups/g2", body=group2), 403, 403002)
    group3 = {
        "enrollmentGroupId": "g3",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "ca"}}},
    }
    assert dps.call("PUT", "/enrollmentGroups/g3", body=group3).status_code == 200


def test_etag_rules_for_put_and_delete(dps: Dps) -> None:
    """Create without If-Match; 409 without it on an existing record; 412 stale; * ok."""
    assert_error(
        dps.call("PUT", "/enrollments/e1", body=sym("e1"), headers={"If-Match": "*"}), 404, 404201
    )
    first = dps.call("PUT", "/enrollments/e1", body=sym("e1", deviceId="one")).json()
    assert_error(dps.call("PUT", "/enrollments/e1", body=sym("e1")), 409, 409201)
    assert_error(
        dps.call(
            "PUT", "/enrollments/E1", body=sym("E1"), headers={"If-Match": f'"{first["etag"]}"'}
        ),
        412,
    )
    second = dps.call("PUT", "/enrollments/e1", body=sym("e1"), headers={"If-Match": "*"}).json()
    assert second["etag"] != first["etag"]
    assert second["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    assert "deviceId" not in second  # full replacement, not a merge
    assert_error(
        dps.call("DELETE", "/enrollments/e1", headers={"If-Match": first["etag"]}), 412, 412001
    )
    assert (
        dps.call("DELETE", "/enrollments/e1", headers={"If-Match": second["etag"]}).status_code
        == 204
    )


def test_keys_are_masked_on_get_and_query_but_returned_on_put(dps: Dps) -> None:
    put = dps.call("PUT", "/enrollments/k1", body=sym("k1")).json()
    keys = put["attestation"]["symmetricKey"]
    assert len(base64.b64decode(keys["primaryKey"])) == 64
    assert keys["primaryKey"] != keys["secondaryKey"]
    assert dps.call("GET", "/enrollments/k1").json()["attestation"] == {"type": "symmetricKey"}
    assert dps.call("POST", "/enrollments/k1/attestationmechanism").json()["symmetricKey"] == keys


def test_registration_state_is_embedded_in_individual_get(dps: Dps) -> None:
    dps.call("PUT", "/enrollments/r1", body=sym("r1"))
    dps.store.upsert_registration(
        "r1", {"status": "assigned", "assignedHub": "h", "deviceId": "r1"}
    )
    state = dps.call("GET", "/enrollments/r1").json()["registrationState"]
    assert state["status"] == "assigned"
    assert dps.call("GET", "/registrations/R1").json()["etag"] == state["etag"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        "SharedAccessSignature sr=x",
        "Bearer not-a-jwt",
        "SharedAccessSignature sr=127.0.0.1%3A4433&sig=AAAA&se=9999999999&skn=provisioningserviceowner",
        "SharedAccessSignature sr=127.0.0.1%3A4433&sig=%%%&se=9999999999&skn=provisioningserviceowner",
        "SharedAccessSignature sr=127.0.0.1%3A4433&sig=AAAA&se=soon&skn=provisioningserviceowner",
    ],
)
def test_bad_credentials_are_401(dps: Dps, header: str) -> None:
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": header}), 401, 401001)


def test_sas_checks_expiry_policy_resource_and_rights(dps: Dps) -> None:
    owner = next(
        p for p in dps.instance.access_policies if p.key_name == "provisioningserviceowner"
    )
    expired = sas_token(LOCAL_HOST, owner.key_name, owner.primary_key, ttl=-10)
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": expired}), 401)
    unknown = sas_token(LOCAL_HOST, "nobody", owner.primary_key)
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": unknown}), 401)
    other_host = sas_token(
        "other.azure-devices-provisioning.net", owner.key_name, owner.primary_key
    )
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": other_host}), 401)
    # Accepted forms: the secondary key, a scheme in sr, the public host name, a path prefix.
    for token in (
        sas_token(LOCAL_HOST, owner.key_name, owner.secondary_key),
        sas_token(LOCAL_HOST, owner.key_name, owner.primary_key, sr=f"https://{LOCAL_HOST}"),
        sas_token(dps.instance.public_host, owner.key_name, owner.primary_key),
        sas_token(LOCAL_HOST, owner.key_name, owner.primary_key, sr=f"{LOCAL_HOST}/enrollments"),
    ):
        assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": token}), 404, 404201)
    narrow = sas_token(
        LOCAL_HOST, owner.key_name, owner.primary_key, sr=f"{LOCAL_HOST}/registrations"
    )
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": narrow}), 401)
    # Node's millisecond expiry is far in the future and accepted.
    se = str(int(time.time() * 1000))
    import hashlib
    import hmac
    import urllib.parse

    sig = base64.b64encode(
        hmac.new(
            base64.b64decode(owner.primary_key), f"{LOCAL_HOST}\n{se}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    node = f"SharedAccessSignature sr={LOCAL_HOST}&sig={urllib.parse.quote(sig, safe='')}&skn={owner.key_name}&se={se}"
    assert_error(dps.call("GET", "/enrollments/x", auth={"Authorization": node}), 404, 404201)
    # The read-only policy reads but cannot write.
    reader = dps.policy_sas("enrollmentread")
    assert_error(dps.call("GET", "/enrollments/x", auth=reader), 404)
    assert_error(dps.call("PUT", "/enrollments/x", body=sym("x"), auth=reader), 401, 401001)
    assert_error(dps.call("DELETE", "/registrations/x", auth=reader), 401, 401001)


def test_bearer_token_checks(dps: Dps) -> None:
    dana = dps.ctx.tenant.user_by_username("dana.contributor@contoso-iot.example")
    assert dana is not None
    assert dps.call("GET", "/enrollments/x", auth=dps.bearer(dana.object_id)).status_code == 404
    for bad in (
        dps.bearer(dana.object_id, aud="https://management.azure.com"),
        dps.bearer(dana.object_id, iss="https://evil.example/"),
        dps.bearer(dana.object_id, exp=int(time.time()) - 60),
        dps.bearer(dana.object_id, tid="00000000-0000-0000-0000-000000000000"),
    ):
        assert_error(dps.call("GET", "/enrollments/x", auth=bad), 401, 401001)
    v2 = dps.bearer(dana.object_id, iss=dps.ctx.v2_issuer)
    assert dps.call("GET", "/enrollments/x", auth=v2).status_code == 404
