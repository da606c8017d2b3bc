"""Role matrix: every demo principal x every operation, allowed or 403 as Azure RBAC decides.

The expected decision is computed here, independently of emulators.common.rbac, from the
raw tenant file and the semantics of reference/identity §4.3 (wildcards across '/', case-
insensitive, notDataActions subtract within a role, union across roles, inheritance from
management group to resource, group membership). A few decisions are also pinned by hand,
so that a shared mistake in both evaluations would still fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from emulators.common.tenant import DEFAULT_TENANT_FILE
from tests.integration.emulators.dps.conftest import Dps

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PREFIX = "Microsoft.Devices/provisioningServices/"
BUILTIN = {
    "device provisioning service data contributor": [
        {"dataActions": ["Microsoft.Devices/provisioningServices/*"], "notDataActions": []}
    ],
    "device provisioning service data reader": [
        {"dataActions": ["Microsoft.Devices/provisioningServices/*/read"], "notDataActions": []}
    ],
    "owner": [{"dataActions": [], "notDataActions": []}],
    "contributor": [{"dataActions": [], "notDataActions": []}],
    "reader": [{"dataActions": [], "notDataActions": []}],
}

# (operation, method, path, body, data action)
OPERATIONS: list[tuple[str, str, str, Any, str]] = [
    ("IndividualEnrollment_Get", "GET", "/enrollments/e1", None, "enrollments/read"),
    (
        "IndividualEnrollment_CreateOrUpdate",
        "PUT",
        "/enrollments/e2",
        {"registrationId": "e2", "attestation": {"type": "symmetricKey"}},
        "enrollments/write",
    ),
    ("IndividualEnrollment_Delete", "DELETE", "/enrollments/e3", None, "enrollments/delete"),
    (
        "IndividualEnrollment_Query",
        "POST",
        "/enrollments/query",
        {"query": "*"},
        "enrollments/read",
    ),
    (
        "IndividualEnrollment_GetAttestationMechanism",
        "POST",
        "/enrollments/e1/attestationmechanism",
        None,
        "attestationmechanism/details/action",
    ),
    (
        "IndividualEnrollment_RunBulkOperation(create)",
        "POST",
        "/enrollments",
        {
            "mode": "create",
            "enrollments": [{"registrationId": "e4", "attestation": {"type": "symmetricKey"}}],
        },
        "enrollments/write",
    ),
    (
        "IndividualEnrollment_RunBulkOperation(delete)",
        "POST",
        "/enrollments",
        {
            "mode": "delete",
            "enrollments": [{"registrationId": "e5", "attestation": {"type": "symmetricKey"}}],
        },
        "enrollments/delete",
    ),
    ("EnrollmentGroup_Get", "GET", "/enrollmentGroups/g1", None, "enrollmentGroups/read"),
    (
        "EnrollmentGroup_CreateOrUpdate",
        "PUT",
        "/enrollmentGroups/g2",
        {"enrollmentGroupId": "g2", "attestation": {"type": "symmetricKey"}},
        "enrollmentGroups/write",
    ),
    ("EnrollmentGroup_Delete", "DELETE", "/enrollmentGroups/g3", None, "enrollmentGroups/delete"),
    (
        "EnrollmentGroup_Query",
        "POST",
        "/enrollmentGroups/query",
        {"query": "*"},
        "enrollmentGroups/read",
    ),
    (
        "EnrollmentGroup_GetAttestationMechanism",
        "POST",
        "/enrollmentGroups/g1/attestationmechanism",
        None,
        "attestationmechanism/details/action",
    ),
    (
        "EnrollmentGroup_RunBulkOperation(create)",
        "POST",
        "/enrollmentGroups",
        {
            "mode": "create",
            "enrollmentGroups": [
                {"enrollmentGroupId": "g4", "attestation": {"type": "symmetricKey"}}
            ],
        },
        "enrollmentGroups/write",
    ),
    (
        "EnrollmentGroup_RunBulkOperation(delete)",
        "POST",
        "/enrollmentGroups",
        {
            "mode": "delete",
            "enrollmentGroups": [
                {"enrollmentGroupId": "g5", "attestation": {"type": "symmetricKey"}}
            ],
        },
        "enrollmentGroups/delete",
    ),
    ("DeviceRegistrationState_Get", "GET", "/registrations/d1", None, "registrationStates/read"),
    (
        "DeviceRegistrationState_Delete",
        "DELETE",
        "/registrations/d2",
        None,
        "registrationStates/delete",
    ),
    (
        "DeviceRegistrationState_Query",
        "POST",
        "/registrations/g1/query",
        None,
        "registrationStates/read",
    ),
]


def _matches(pattern: str, action: str) -> bool:
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(rx, action, re.IGNORECASE) is not None


class ExpectedRbac:
    """Azure RBAC over the raw tenant file, written apart from the emulator's code."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.roles = {k: v for k, v in BUILTIN.items()}
        for r in raw.get("role_definitions", []):
            self.roles[r["role_name"].lower()] = r["permissions"]
            self.roles[r["id"].lower()] = r["permissions"]

    def _groups(self, principal: str) -> set[str]:
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for g in self.raw.get("groups", []):
                if g["object_id"] not in found and ({principal} | found) & set(g["members"]):
                    found.add(g["object_id"])
                    changed = True
        return found

    def _scopes(self, dps: dict[str, Any]) -> set[str]:
        sub, rg = dps["subscription_id"], dps["resource_group"]
        scopes = {
            "/",
            f"/subscriptions/{sub}",
            f"/subscriptions/{sub}/resourceGroups/{rg}",
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Devices/provisioningServices/{dps['name']}",
        }
        mgs = {m["name"]: m for m in self.raw.get("management_groups", [])}
        current = next((m for m in mgs.values() if sub in m["subscriptions"]), None)
        while current is not None:
            scopes.add(f"/providers/Microsoft.Management/managementGroups/{current['name']}")
            current = mgs.get(current.get("parent") or "")
        return {s.lower() for s in scopes}

    def allowed(self, principal: str, dps: dict[str, Any], action: str) -> bool:
        principals = {principal} | self._groups(principal)
        scopes = self._scopes(dps)
        for ra in self.raw["role_assignments"]:
            if ra["principal_id"] not in principals or ra["scope"].lower().rstrip(
                "/"
            ) not in scopes | {""}:
                continue
            for block in self.roles[ra["role"].lower()]:
                granted = any(_matches(p, action) for p in block.get("dataActions", []))
                removed = any(_matches(p, action) for p in block.get("notDataActions", []))
                if granted and not removed:
                    return True
        return False


def _principals(raw: dict[str, Any]) -> list[tuple[str, str]]:
    users = [(u["username"], u["object_id"]) for u in raw["users"]]
    apps = [
        (a["name"], a["service_principal_id"])
        for a in raw["apps"]
        if a["name"].startswith("fleet-automation")
    ]
    assert len(apps) == 2
    return users + apps


def _seed(dps: Dps) -> None:
    for rid in ("e1", "e3", "e5"):
        dps.call(
            "PUT",
            f"/enrollments/{rid}",
            body={"registrationId": rid, "attestation": {"type": "symmetricKey"}},
        )
    for gid in ("g1", "g3", "g5"):
        dps.call(
            "PUT",
            f"/enrollmentGroups/{gid}",
            body={"enrollmentGroupId": gid, "attestation": {"type": "symmetricKey"}},
        )
    dps.store.upsert_registration("d1", {"status": "assigned"}, group_id="g1")
    dps.store.upsert_registration("d2", {"status": "assigned"}, group_id="g1")


RAW_TENANT = json.loads(DEFAULT_TENANT_FILE.read_text())


@pytest.mark.parametrize("dps_name", [d["name"] for d in RAW_TENANT["dps_instances"]])
@pytest.mark.parametrize(("who", "oid"), _principals(RAW_TENANT))
def test_each_principal_gets_exactly_what_rbac_grants(
    make_dps: Callable[..., Dps], dps_name: str, who: str, oid: str
) -> None:
    """Each of the operations is allowed or 403 exactly as the role assignments decide."""
    expected = ExpectedRbac(RAW_TENANT)
    dps_raw = next(d for d in RAW_TENANT["dps_instances"] if d["name"] == dps_name)
    dps = make_dps(dps_name)
    _seed(dps)
    auth = dps.bearer(oid)
    wrong: list[str] = []
    for name, method, path, body, action in OPERATIONS:
        want = expected.allowed(oid, dps_raw, PREFIX + action)
        resp = dps.call(method, path, body=body, auth=auth)
        assert resp.status_code != 401, resp.text
        got = resp.status_code != 403
        if resp.status_code == 403:
            assert resp.json()["errorCode"] == 403001
            assert PREFIX + action in resp.json()["message"]
        if got != want:
            wrong.append(f"{name}: expected {'allowed' if want else '403'}, got {resp.status_code}")
    assert not wrong, f"{who} on {dps_name}: " + "; ".join(wrong)


PINNED = {
    # (username or app, instance): actions allowed (relative), everything else denied
    ("dana.contributor@contoso-iot.example", "dps-fleet-prod"): "all",
    ("reggie.reader@contoso-iot.example", "dps-fleet-prod"): {
        "enrollments/read",
        "enrollmentGroups/read",
        "registrationStates/read",
    },
    ("kim.keyreader@contoso-iot.example", "dps-fleet-prod"): {
        "enrollments/read",
        "enrollmentGroups/read",
        "registrationStates/read",
        "attestationmechanism/details/action",
    },
    ("nora.norole@contoso-iot.example", "dps-fleet-prod"): set(),
    ("oscar.operator@contoso-iot.example", "dps-fleet-prod"): {
        "enrollments/read",
        "enrollments/write",
        "enrollmentGroups/read",
        "enrollmentGroups/write",
        "registrationStates/read",
    },
    ("gina.group@contoso-iot.example", "dps-fleet-prod"): "all",
    ("gina.group@contoso-iot.example", "dps-fleet-lab"): set(),
    ("max.mixed@contoso-iot.example", "dps-fleet-prod"): {
        "enrollments/read",
        "enrollmentGroups/read",
        "registrationStates/read",
    },
    ("max.mixed@contoso-iot.example", "dps-fleet-lab"): "all",
    ("fleet-automation-writer", "dps-fleet-prod"): "all",
    ("fleet-automation-reader", "dps-fleet-prod"): {
        "enrollments/read",
        "enrollmentGroups/read",
        "registrationStates/read",
    },
    ("fleet-automation-reader", "dps-fleet-lab"): set(),
}


@pytest.mark.parametrize(
    ("key", "allowed"), list(PINNED.items()), ids=[f"{k[0]}@{k[1]}" for k in PINNED]
)
def test_pinned_decisions_match_the_independent_evaluation(
    key: tuple[str, str], allowed: Any
) -> None:
    """Hand-written expectations for the demo principals agree with ExpectedRbac."""
    who, dps_name = key
    oid = dict(_principals(RAW_TENANT))[who]
    dps_raw = next(d for d in RAW_TENANT["dps_instances"] if d["name"] == dps_name)
    expected = ExpectedRbac(RAW_TENANT)
    actions = {op[4] for op in OPERATIONS}
    want = actions if allowed == "all" else allowed
    got = {a for a in actions if expected.allowed(oid, dps_raw, PREFIX + a)}
    assert got == want
