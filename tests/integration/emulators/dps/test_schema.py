"""Every response of the 15 operations validates against the official OpenAPI file.

The spec (reference/dps-service/service-2021-10-01.json) is read from ../shared; its
``$ref``s are inlined here, and every object it defines is closed
(``additionalProperties: false``) so the emulator cannot send undocumented properties.
Two relaxations follow what the real service was recorded doing (API.md §4.5):
``provisioningStatus`` may be null (an explicit null is echoed), and TwinCollection values
may be any JSON (the spec says objects; the recordings hold strings).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.integration.emulators.dps.conftest import Dps
from tests.support.certs import self_signed_pem

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FREE_FORM = {"TwinCollection"}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace every ``#/definitions/X`` reference by a closed copy of X."""
    if isinstance(node, list):
        return [_inline(n, definitions) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _inline(_close(name, definitions[name]), definitions)
    return {k: _inline(v, definitions) for k, v in node.items() if not k.startswith("x-ms-")}


def _close(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    if name in FREE_FORM:
        schema["additionalProperties"] = True
    elif schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
    if name in ("IndividualEnrollment", "EnrollmentGroup"):
        schema["properties"]["provisioningStatus"]["type"] = ["string", "null"]
        schema["properties"]["provisioningStatus"]["enum"].append(None)
    return schema


class Spec:
    def __init__(self, path: Path) -> None:
        raw = json.loads(path.read_text())
        self.definitions = raw["definitions"]
        self.ops: dict[str, dict[str, Any]] = {}
        for ops in raw["paths"].values():
            for op in ops.values():
                self.ops[op["operationId"]] = op
        self.seen: dict[str, set[str]] = {name: set() for name in self.ops}

    def schema(self, op_id: str, status: int) -> dict[str, Any] | None:
        responses = self.ops[op_id]["responses"]
        resp = responses.get(str(status)) or responses["default"]
        if "schema" not in resp:
            return None
        return _inline(resp["schema"], self.definitions)

    def check(self, op_id: str, resp: Any, expected_status: int) -> Any:
        """Validate one response of ``op_id`` and remember whether it was success or error."""
        assert resp.status_code == expected_status, f"{op_id}: {resp.status_code} {resp.text}"
        assert resp.headers.get("strict-transport-security")
        responses = self.ops[op_id]["responses"]
        if str(resp.status_code) in responses:
            self.seen[op_id].add("success")
            schema = self.schema(op_id, resp.status_code)
            if schema is None:
                assert resp.content == b"", f"{op_id}: body on {resp.status_code}"
                return None
            body = resp.json()
            jsonschema.Draft4Validator(schema).validate(body)
            declared = responses[str(resp.status_code)].get("headers", {})
            if "x-ms-item-type" in declared:
                assert isinstance(resp.headers.get("x-ms-item-type"), str)
            assert resp.headers["content-type"] == "application/json; charset=utf-8"
            return body
        self.seen[op_id].add("error")
        body = resp.json()
        jsonschema.Draft4Validator(self.schema(op_id, resp.status_code)).validate(body)
        assert set(body) >= {"errorCode", "trackingId", "message", "timestampUtc"}
        assert 100000 <= body["errorCode"] <= 999999
        assert body["errorCode"] // 1000 == resp.status_code
        assert resp.headers["x-ms-error-code"] == str(body["errorCode"])
        assert resp.headers["content-type"] == "application/json; charset=utf-8"
        return body


@pytest.fixture
def spec(reference_dir: Path) -> Spec:
    path = reference_dir / "dps-service" / "service-2021-10-01.json"
    if not path.is_file():
        pytest.skip(f"OpenAPI file not found at {path}")
    return Spec(path)


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _ek() -> str:
    return base64.b64encode(secrets.token_bytes(256)).decode()


def _full_enrollment(rid: str, hub: str) -> dict[str, Any]:
    return {
        "registrationId": rid,
        "deviceId": f"{rid}-device",
        "optionalDeviceInformation": {"model": {"v": 1}},
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": _key()}},
        "capabilities": {"iotEdge": True},
        "initialTwin": {"tags": {"site": {"n": "a"}}, "properties": {"desired": {"x": {"y": 1}}}},
        "provisioningStatus": "enabled",
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": True},
        "allocationPolicy": "static",
        "iotHubs": [hub],
    }


def test_every_operation_answers_as_the_spec_says(dps: Dps, spec: Spec) -> None:
    """All 15 operations, success and error, validate against service-2021-10-01.json."""
    hub = dps.instance.iot_hubs[0].name
    pem = self_signed_pem("schema-device")
    c = dps.call

    # 2 IndividualEnrollment_CreateOrUpdate
    op = "IndividualEnrollment_CreateOrUpdate"
    sym = spec.check(op, c("PUT", "/enrollments/sym-1", body=_full_enrollment("sym-1", hub)), 200)
    assert sym["attestation"]["symmetricKey"]["secondaryKey"]
    spec.check(
        op,
        c(
            "PUT",
            "/enrollments/tpm-1",
            body={
                "registrationId": "tpm-1",
                "attestation": {"type": "tpm", "tpm": {"endorsementKey": _ek()}},
            },
        ),
        200,
    )
    x509 = spec.check(
        op,
        c(
            "PUT",
            "/enrollments/x509-1",
            body={
                "registrationId": "x509-1",
                "attestation": {
                    "type": "x509",
                    "x509": {"clientCertificates": {"primary": {"certificate": pem}}},
                },
                "allocationPolicy": "custom",
                "customAllocationDefinition": {
                    "webhookUrl": "https://hook.example/x",
                    "apiVersion": "2021-10-01",
                },
                "provisioningStatus": None,
            },
        ),
        200,
    )
    assert x509["attestation"]["x509"]["clientCertificates"]["secondary"]["info"][
        "subjectName"
    ] == ("CN=schema-device")
    spec.check(op, c("PUT", "/enrollments/sym-1", body=_full_enrollment("sym-1", hub)), 409)
    spec.check(
        op,
        c(
            "PUT",
            "/enrollments/sym-1",
            body=_full_enrollment("sym-1", hub),
            headers={"If-Match": "stale"},
        ),
        412,
    )
    updated = spec.check(
        op,
        c(
            "PUT",
            "/enrollments/sym-1",
            body=_full_enrollment("sym-1", hub),
            headers={"If-Match": sym["etag"]},
        ),
        200,
    )
    assert updated["etag"] != sym["etag"]
    spec.check(op, c("PUT", "/enrollments/bad-1", body={"registrationId": "bad-1"}), 400)

    # 1 IndividualEnrollment_Get
    got = spec.check("IndividualEnrollment_Get", c("GET", "/enrollments/sym-1"), 200)
    assert got["registrationState"] == {"registrationId": "sym-1", "status": "unassigned"}
    spec.check("IndividualEnrollment_Get", c("GET", "/enrollments/x509-1"), 200)
    spec.check("IndividualEnrollment_Get", c("GET", "/enrollments/nope"), 404)

    # 5 IndividualEnrollment_GetAttestationMechanism
    op = "IndividualEnrollment_GetAttestationMechanism"
    att = spec.check(op, c("POST", "/enrollments/sym-1/attestationmechanism"), 200)
    assert att["symmetricKey"]["primaryKey"] == updated["attestation"]["symmetricKey"]["primaryKey"]
    spec.check(op, c("POST", "/enrollments/nope/attestationmechanism"), 404)

    # 4 IndividualEnrollment_Query (paged)
    op = "IndividualEnrollment_Query"
    first = c(
        "POST",
        "/enrollments/query",
        body={"query": "SELECT *"},
        headers={"x-ms-max-item-count": "2"},
    )
    assert len(spec.check(op, first, 200)) == 2
    rest = c(
        "POST",
        "/enrollments/query",
        body={"query": "SELECT *"},
        headers={
            "x-ms-max-item-count": "2",
            "x-ms-continuation": first.headers["x-ms-continuation"],
        },
    )
    assert len(spec.check(op, rest, 200)) == 1
    assert "x-ms-continuation" not in rest.headers
    spec.check(
        op,
        c("POST", "/enrollments/query", body={"query": "*"}, headers={"x-ms-max-item-count": "-1"}),
        400,
    )

    # 6 IndividualEnrollment_RunBulkOperation
    op = "IndividualEnrollment_RunBulkOperation"
    items = [
        {"registrationId": f"bulk-{i}", "attestation": {"type": "symmetricKey"}} for i in range(3)
    ]
    assert spec.check(
        op, c("POST", "/enrollments", body={"mode": "create", "enrollments": items}), 200
    )["isSuccessful"]
    partial = spec.check(
        op, c("POST", "/enrollments", body={"mode": "create", "enrollments": items}), 200
    )
    assert [err["errorCode"] for err in partial["errors"]] == [409201] * 3
    many = [{"registrationId": f"m-{i}", "attestation": {"type": "tpm"}} for i in range(11)]
    spec.check(op, c("POST", "/enrollments", body={"mode": "create", "enrollments": many}), 400)

    # 3 IndividualEnrollment_Delete
    op = "IndividualEnrollment_Delete"
    spec.check(op, c("DELETE", "/enrollments/tpm-1", headers={"If-Match": "stale"}), 412)
    spec.check(op, c("DELETE", "/enrollments/tpm-1"), 204)
    spec.check(op, c("DELETE", "/enrollments/tpm-1"), 404)

    # 8 EnrollmentGroup_CreateOrUpdate
    op = "EnrollmentGroup_CreateOrUpdate"
    group_body = {
        "enrollmentGroupId": "grp-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": None, "secondaryKey": None},
        },
        "initialTwin": {"properties": {"desired": {"k": "v"}}},
        "iotHubs": [hub],
    }
    grp = spec.check(op, c("PUT", "/enrollmentGroups/grp-1", body=group_body), 200)
    spec.check(
        op,
        c(
            "PUT",
            "/enrollmentGroups/grp-x509",
            body={
                "enrollmentGroupId": "grp-x509",
                "attestation": {
                    "type": "x509",
                    "x509": {"signingCertificates": {"primary": {"certificate": pem}}},
                },
            },
        ),
        200,
    )
    spec.check(
        op,
        c(
            "PUT",
            "/enrollmentGroups/grp-ca",
            body={
                "enrollmentGroupId": "grp-ca",
                "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "root-ca"}}},
            },
        ),
        200,
    )
    spec.check(op, c("PUT", "/enrollmentGroups/grp-1", body=group_body), 409)
    spec.check(
        op,
        c(
            "PUT",
            "/enrollmentGroups/grp-tpm",
            body={
                "enrollmentGroupId": "grp-tpm",
                "attestation": {"type": "tpm", "tpm": {"endorsementKey": _ek()}},
            },
        ),
        400,
    )

    # 7 EnrollmentGroup_Get
    got = spec.check("EnrollmentGroup_Get", c("GET", "/enrollmentGroups/GRP-1"), 200)
    assert got["attestation"] == {"type": "symmetricKey"}
    assert "registrationState" not in got
    spec.check("EnrollmentGroup_Get", c("GET", "/enrollmentGroups/none"), 404)

    # 11 EnrollmentGroup_GetAttestationMechanism
    op = "EnrollmentGroup_GetAttestationMechanism"
    att = spec.check(op, c("POST", "/enrollmentGroups/grp-1/attestationmechanism"), 200)
    assert att["symmetricKey"] == grp["attestation"]["symmetricKey"]
    spec.check(op, c("POST", "/enrollmentGroups/none/attestationmechanism"), 404)

    # 10 EnrollmentGroup_Query
    op = "EnrollmentGroup_Query"
    assert (
        len(spec.check(op, c("POST", "/enrollmentGroups/query", body={"query": "SELECT *"}), 200))
        == 3
    )
    spec.check(op, c("POST", "/enrollmentGroups/query", raw=b"{not json"), 400)

    # 12 EnrollmentGroup_RunBulkOperation
    op = "EnrollmentGroup_RunBulkOperation"
    gitems = [{"enrollmentGroupId": "bg-1", "attestation": {"type": "symmetricKey"}}]
    spec.check(
        op, c("POST", "/enrollmentGroups", body={"mode": "create", "enrollmentGroups": gitems}), 200
    )
    res = spec.check(
        op, c("POST", "/enrollmentGroups", body={"mode": "update", "enrollmentGroups": gitems}), 200
    )
    assert res["errors"][0]["errorCode"] == 409202
    spec.check(
        op, c("POST", "/enrollmentGroups", body={"mode": "upsert", "enrollmentGroups": gitems}), 400
    )

    # 13-15 registration states
    dps.store.upsert_registration(
        "dev-a",
        {
            "assignedHub": hub,
            "deviceId": "dev-a",
            "status": "assigned",
            "substatus": "initialAssignment",
        },
        group_id="grp-1",
    )
    op = "DeviceRegistrationState_Query"
    regs = spec.check(op, c("POST", "/registrations/grp-1/query"), 200)
    assert [r["registrationId"] for r in regs] == ["dev-a"]
    spec.check(op, c("POST", "/registrations/none/query"), 404)
    op = "DeviceRegistrationState_Get"
    reg = spec.check(op, c("GET", "/registrations/dev-a"), 200)
    spec.check(op, c("GET", "/registrations/dev-b"), 404)
    op = "DeviceRegistrationState_Delete"
    spec.check(op, c("DELETE", "/registrations/dev-a", headers={"If-Match": "old"}), 412)
    spec.check(op, c("DELETE", "/registrations/dev-a", headers={"If-Match": reg["etag"]}), 204)
    spec.check(op, c("DELETE", "/registrations/dev-a"), 404)

    # 9 EnrollmentGroup_Delete
    op = "EnrollmentGroup_Delete"
    spec.check(op, c("DELETE", "/enrollmentGroups/grp-1", headers={"If-Match": grp["etag"]}), 204)
    spec.check(op, c("DELETE", "/enrollmentGroups/grp-1"), 404)

    # Authentication and authorization errors are errors of the operation too.
    spec.check("IndividualEnrollment_Get", c("GET", "/enrollments/sym-1", auth={}), 401)
    nora = next(u for u in dps.ctx.tenant.users if u.username.startswith("nora"))
    spec.check(
        "IndividualEnrollment_Get",
        c("GET", "/enrollments/sym-1", auth=dps.bearer(nora.object_id)),
        403,
    )

    missing = {
        op_id: {"success", "error"} - seen
        for op_id, seen in spec.seen.items()
        if seen != {"success", "error"}
    }
    assert not missing, f"operations not driven through success and error: {missing}"
