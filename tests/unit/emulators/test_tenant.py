"""Loading the tenant file and walking its scope tree (emulators.common.tenant)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulators.common.tenant import (
    DEFAULT_TENANT_FILE,
    TenantFileError,
    load_tenant,
    tenant_from_dict,
)

SUB = "/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c"
RG = f"{SUB}/resourceGroups/rg-iot-fleet"
PROD = f"{RG}/providers/Microsoft.Devices/provisioningServices/dps-fleet-prod"
MG = "/providers/Microsoft.Management/managementGroups/mg-iot-fleet"


def minimal(**extra: Any) -> dict[str, Any]:
    return {"tenant_id": "t-1", "domain": "example.test", **extra}


def test_ancestor_scopes_of_a_resource() -> None:
    """The chain runs resource, resource group, subscription, management group, root."""
    tenant = load_tenant()
    assert tenant.ancestor_scopes(PROD) == [PROD, RG, SUB, MG, "/"]
    assert tenant.ancestor_scopes(RG) == [RG, SUB, MG, "/"]
    assert tenant.ancestor_scopes(SUB) == [SUB, MG, "/"]


def test_ancestor_scopes_accept_sdk_spelling() -> None:
    """Lower-case ``resourcegroups`` and the SDK's double slash give the same chain."""
    tenant = load_tenant()
    odd = PROD.replace("resourceGroups", "resourcegroups").replace(
        "Microsoft.Devices/", "Microsoft.Devices//"
    )
    assert [s.lower() for s in tenant.ancestor_scopes(odd)] == [
        s.lower() for s in tenant.ancestor_scopes(PROD)
    ]


def test_ancestor_scopes_walk_nested_management_groups() -> None:
    tenant = tenant_from_dict(
        minimal(
            management_groups=[
                {"name": "root-mg", "parent": None, "subscriptions": []},
                {"name": "child-mg", "parent": "root-mg", "subscriptions": ["s-1"]},
            ]
        )
    )
    assert tenant.ancestor_scopes("/subscriptions/s-1/resourceGroups/r") == [
        "/subscriptions/s-1/resourceGroups/r",
        "/subscriptions/s-1",
        "/providers/Microsoft.Management/managementGroups/child-mg",
        "/providers/Microsoft.Management/managementGroups/root-mg",
        "/",
    ]
    assert tenant.ancestor_scopes("/subscriptions/other") == ["/subscriptions/other", "/"]


def test_group_membership_is_transitive() -> None:
    tenant = tenant_from_dict(
        minimal(
            groups=[
                {"object_id": "g-outer", "members": ["g-inner"]},
                {"object_id": "g-inner", "members": ["u-1"]},
                {"object_id": "g-other", "members": ["u-2"]},
            ]
        )
    )
    assert sorted(tenant.group_ids_of("u-1")) == ["g-inner", "g-outer"]
    assert tenant.group_ids_of("u-3") == []


def test_default_tenant_lookups() -> None:
    tenant = load_tenant()
    gina = tenant.user_by_username("  GINA.Group@contoso-iot.example ")
    assert gina is not None
    assert tenant.group_ids_of(gina.object_id) == ["f5e7a6fd-a666-422c-8977-07989d30d029"]
    ivan = tenant.user_by_username("ivan.inactive@contoso-iot.example")
    assert ivan is not None
    assert ivan.enabled is False
    assert tenant.dps_by_name("DPS-FLEET-PROD") is not None
    assert tenant.role_definition("reader") is not None
    portal = tenant.app_by_client_id("df8fb8c9-c530-46f1-9445-ded8a5ffda68")
    assert portal is not None
    assert portal.api_scope_uris == [
        "api://df8fb8c9-c530-46f1-9445-ded8a5ffda68/user_impersonation"
    ]


def test_missing_field_names_the_place() -> None:
    with pytest.raises(TenantFileError, match=r"users\[0\]: missing field 'password'"):
        tenant_from_dict(minimal(users=[{"object_id": "u", "username": "a@b"}]))


def test_unknown_role_in_assignment_is_refused() -> None:
    data = minimal(role_assignments=[{"principal_id": "u", "role": "No Such Role", "scope": "/"}])
    with pytest.raises(TenantFileError, match="unknown role 'No Such Role'"):
        tenant_from_dict(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TenantFileError, match="not found"):
        load_tenant(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TenantFileError, match="not valid JSON"):
        load_tenant(broken)
    with pytest.raises(TenantFileError, match="JSON object"):
        tenant_from_dict([])  # type: ignore[arg-type]


def test_default_tenant_file_round_trips() -> None:
    """The shipped file parses and keeps every assignment."""
    raw = json.loads(DEFAULT_TENANT_FILE.read_text())
    tenant = load_tenant()
    assert len(tenant.role_assignments) == len(raw["role_assignments"])
    assert {u.username for u in tenant.users} == {u["username"] for u in raw["users"]}
