"""The ARM emulator's Permissions - List For Resource answer, checked against the tenant file."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from emulators.common.tenant import DEFAULT_TENANT_FILE
from tests.integration.emulators.conftest import ARM_SCOPE, DPS_SCOPE, Entra

API = "api-version=2022-04-01"
PERMS = "providers/Microsoft.Authorization/permissions"
TENANT = json.loads(DEFAULT_TENANT_FILE.read_text())
# Built-in roles the default tenant assigns, as Azure defines them (reference/identity §4.1).
BUILTIN = {
    "Device Provisioning Service Data Contributor": [
        {
            "actions": [],
            "notActions": [],
            "dataActions": ["Microsoft.Devices/provisioningServices/*"],
            "notDataActions": [],
        }
    ],
    "Device Provisioning Service Data Reader": [
        {
            "actions": [],
            "notActions": [],
            "dataActions": ["Microsoft.Devices/provisioningServices/*/read"],
            "notDataActions": [],
        }
    ],
    "Reader": [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}],
}
ENABLED_USERS = [u["username"].split("@")[0] for u in TENANT["users"] if u.get("enabled", True)]


def expected_blocks(principal: str, dps: dict[str, Any]) -> list[dict[str, list[str]]]:
    """Compute the answer from the raw tenant file, independently of emulators.common."""
    principals = {principal}
    changed = True
    while changed:
        changed = False
        for g in TENANT["groups"]:
            if principals & set(g["members"]) and g["object_id"] not in principals:
                principals.add(g["object_id"])
                changed = True
    sub = f"/subscriptions/{dps['subscription_id']}"
    rg = f"{sub}/resourceGroups/{dps['resource_group']}"
    scopes = {f"{rg}/providers/Microsoft.Devices/provisioningServices/{dps['name']}", rg, sub, "/"}
    for mg in TENANT["management_groups"]:
        if dps["subscription_id"] in mg["subscriptions"]:
            scopes.add(f"/providers/Microsoft.Management/managementGroups/{mg['name']}")
    scopes = {s.lower() for s in scopes}
    custom = {r["role_name"]: r["permissions"] for r in TENANT["role_definitions"]}
    out = []
    for ra in TENANT["role_assignments"]:
        if ra["principal_id"] in principals and ra["scope"].lower() in scopes:
            out.extend(BUILTIN.get(ra["role"]) or custom[ra["role"]])
    return out


@pytest.fixture(scope="module")
def arm_tokens(entra: Entra) -> dict[str, str]:
    """ARM access tokens of every enabled demo user, from the real sign-in flow."""
    return {who: entra.user_tokens(who, [ARM_SCOPE])["access_token"] for who in ENABLED_USERS}


def get(entra: Entra, path: str, token: str | None = None, query: str = API) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{entra.endpoints['arm_endpoint']}{path}" + (f"?{query}" if query else "")
    return entra.http.get(url, headers=headers)


def assert_arm_error(r: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("who", ENABLED_USERS)
@pytest.mark.parametrize("dps", TENANT["dps_instances"], ids=lambda d: d["name"])
def test_permissions_match_tenant_file(
    entra: Entra, arm_tokens: dict[str, str], who: str, dps: dict[str, Any]
) -> None:
    """Each demo user gets exactly the blocks of the assignments at or above the DPS instance."""
    entry = next(d for d in entra.endpoints["dps"] if d["name"] == dps["name"])
    r = get(entra, f"{entry['resource_id']}/{PERMS}", arm_tokens[who])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nextLink"] is None
    oid = entra.user(who)["object_id"]
    assert body["value"] == expected_blocks(oid, dps)


def test_group_member_inherits_group_assignment(entra: Entra, arm_tokens: dict[str, str]) -> None:
    """gina.group has no assignment of her own; "IoT Fleet Operators" gives her Data Contributor."""
    prod = next(d for d in entra.endpoints["dps"] if d["name"] == "dps-fleet-prod")
    r = get(entra, f"{prod['resource_id']}/{PERMS}", arm_tokens["gina.group"])
    assert r.json()["value"] == BUILTIN["Device Provisioning Service Data Contributor"]


def test_resource_group_scope(entra: Entra, arm_tokens: dict[str, str]) -> None:
    """At the resource group, assignments on the DPS below it do not show."""
    rg = "/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c/resourceGroups/rg-iot-fleet"
    dana = get(entra, f"{rg}/{PERMS}", arm_tokens["dana.contributor"])
    assert dana.json()["value"] == BUILTIN["Device Provisioning Service Data Contributor"]
    kim = get(entra, f"{rg}/{PERMS}", arm_tokens["kim.keyreader"])
    assert kim.status_code == 200
    assert kim.json()["value"] == []


def test_sdk_spelling_of_the_path(entra: Entra, arm_tokens: dict[str, str]) -> None:
    """Lower-case ``resourcegroups``, a double slash and odd case match the same resource."""
    sub = "/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c"
    path = (
        f"{sub}/resourcegroups/RG-IOT-FLEET/providers/Microsoft.Devices//provisioningServices/DPS-fleet-prod"
        "/providers/microsoft.authorization/PERMISSIONS"
    )
    r = get(entra, path, arm_tokens["kim.keyreader"])
    assert r.status_code == 200, r.text
    assert r.json()["value"][0]["dataActions"] == [
        "Microsoft.Devices/provisioningServices/*/read",
        "Microsoft.Devices/provisioningServices/attestationmechanism/details/action",
    ]


def test_app_only_token_of_automation_app(entra: Entra) -> None:
    writer = entra.app("fleet-automation-writer")
    token = entra.msal_app("fleet-automation-writer").acquire_token_for_client(
        ["https://management.azure.com/.default"]
    )
    prod = next(d for d in entra.endpoints["dps"] if d["name"] == "dps-fleet-prod")
    r = get(entra, f"{prod['resource_id']}/{PERMS}", token["access_token"])
    assert r.json()["value"] == expected_blocks(
        writer["service_principal_id"], TENANT["dps_instances"][0]
    )
    assert r.json()["value"] == BUILTIN["Device Provisioning Service Data Contributor"]


# -- errors -------------------------------------------------------------------------
def _prod_path(entra: Entra) -> str:
    return (
        next(d["resource_id"] for d in entra.endpoints["dps"] if d["name"] == "dps-fleet-prod")
        + f"/{PERMS}"
    )


def test_missing_token_is_401_with_challenge(entra: Entra) -> None:
    r = get(entra, _prod_path(entra))
    assert_arm_error(r, 401, "AuthenticationFailed")
    assert r.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_garbage_token_is_401(entra: Entra) -> None:
    r = get(entra, _prod_path(entra), "not.a.jwt")
    assert_arm_error(r, 401, "InvalidAuthenticationToken")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = entra.http.get(
        f"{entra.endpoints['arm_endpoint']}{_prod_path(entra)}?{API}",
        headers={"Authorization": "Basic abc"},
    )
    assert_arm_error(r, 401, "AuthenticationFailed")


def test_token_for_another_audience_is_401(entra: Entra) -> None:
    dps_token = entra.msal_app("fleet-automation-reader").acquire_token_for_client([DPS_SCOPE])[
        "access_token"
    ]
    assert_arm_error(
        get(entra, _prod_path(entra), dps_token), 401, "InvalidAuthenticationTokenAudience"
    )


def test_expired_token_is_401(entra: Entra, emulators: Any) -> None:
    now = int(time.time())
    dana = entra.user("dana.contributor")
    token = emulators.ctx.keys.sign(
        {
            "aud": "https://management.azure.com",
            "iss": entra.v1_issuer,
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
            "oid": dana["object_id"],
            "tid": entra.endpoints["tenant_id"],
        },
        v1=True,
    )
    assert_arm_error(get(entra, _prod_path(entra), token), 401, "ExpiredAuthenticationToken")


def test_api_version_is_required_and_checked(entra: Entra, arm_tokens: dict[str, str]) -> None:
    token = arm_tokens["dana.contributor"]
    assert_arm_error(
        get(entra, _prod_path(entra), token, query=""), 400, "MissingApiVersionParameter"
    )
    assert_arm_error(
        get(entra, _prod_path(entra), token, query="api-version=1999-01-01"),
        400,
        "InvalidApiVersionParameter",
    )


def test_unknown_scopes_are_404(entra: Entra, arm_tokens: dict[str, str]) -> None:
    token = arm_tokens["dana.contributor"]
    sub = "/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c"
    missing_dps = f"{sub}/resourceGroups/rg-iot-fleet/providers/Microsoft.Devices/provisioningServices/nope/{PERMS}"
    assert_arm_error(get(entra, missing_dps, token), 404, "ResourceNotFound")
    # dps-fleet-lab exists, but not in rg-iot-fleet.
    wrong_rg = f"{sub}/resourceGroups/rg-iot-fleet/providers/Microsoft.Devices/provisioningServices/dps-fleet-lab/{PERMS}"
    assert_arm_error(get(entra, wrong_rg, token), 404, "ResourceNotFound")
    assert_arm_error(
        get(entra, f"{sub}/resourceGroups/rg-none/{PERMS}", token), 404, "ResourceGroupNotFound"
    )
    assert_arm_error(
        get(
            entra,
            f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-iot-fleet/{PERMS}",
            token,
        ),
        404,
        "SubscriptionNotFound",
    )
    assert_arm_error(get(entra, "/nothing/here", token), 404, "NotFound")


def test_get_dps_resource_needs_a_control_plane_read(
    entra: Entra, arm_tokens: dict[str, str]
) -> None:
    """Oscar holds Reader and sees the resource; a data-plane-only role gets 403."""
    prod = next(d for d in entra.endpoints["dps"] if d["name"] == "dps-fleet-prod")
    r = get(
        entra, prod["resource_id"], arm_tokens["oscar.operator"], query="api-version=2022-02-05"
    )
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["idScope"] == prod["id_scope"]
    assert r.json()["id"] == prod["resource_id"]
    # As in Azure, the service host of the resource; the emulator adds where it really listens.
    assert r.json()["properties"]["serviceOperationsHostName"] == (
        "dps-fleet-prod.azure-devices-provisioning.net"
    )
    assert r.json()["properties"]["emulatorHost"] == prod["host"]
    denied = get(
        entra, prod["resource_id"], arm_tokens["dana.contributor"], query="api-version=2022-02-05"
    )
    assert_arm_error(denied, 403, "AuthorizationFailed")


def test_legacy_management_audience_is_accepted(entra: Entra) -> None:
    """A token for https://management.core.windows.net/ (trailing slash) also works."""
    app = entra.msal_app("fleet-automation-reader")
    token = app.acquire_token_for_client(["https://management.core.windows.net//.default"])[
        "access_token"
    ]
    claims = entra.verify(
        token, audience="https://management.core.windows.net/", issuer=entra.v1_issuer
    )
    assert claims["idtyp"] == "app"
    r = get(entra, _prod_path(entra), token)
    assert r.status_code == 200, r.text
    assert r.json()["value"] == BUILTIN["Device Provisioning Service Data Reader"]
