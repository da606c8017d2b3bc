"""Azure RBAC semantics of emulators.common.rbac (reference/identity §4.3)."""

from __future__ import annotations

import pytest

from emulators.common.rbac import (
    DATA_CONTRIBUTOR_ID,
    DATA_READER_ID,
    DPS_DATA_ACTIONS,
    action_matches,
    data_action_allowed,
    permission_blocks,
)
from emulators.common.tenant import Tenant, load_tenant

P = "Microsoft.Devices/provisioningServices"
READS = {f"{P}/enrollments/read", f"{P}/enrollmentGroups/read", f"{P}/registrationStates/read"}
WRITES = {f"{P}/enrollments/write", f"{P}/enrollmentGroups/write"}
DELETES = {
    f"{P}/enrollments/delete",
    f"{P}/enrollmentGroups/delete",
    f"{P}/registrationStates/delete",
}
REVEAL = f"{P}/attestationmechanism/details/action"
SUB = "/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c"
PROD = f"{SUB}/resourceGroups/rg-iot-fleet/providers/Microsoft.Devices/provisioningServices/dps-fleet-prod"
LAB = f"{SUB}/resourceGroups/rg-iot-lab/providers/Microsoft.Devices/provisioningServices/dps-fleet-lab"


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return load_tenant()


def allowed(blocks: list[dict[str, list[str]]]) -> set[str]:
    return {a for a in DPS_DATA_ACTIONS if data_action_allowed(blocks, a)}


def role_blocks(tenant: Tenant, name: str) -> list[dict[str, list[str]]]:
    role = tenant.role_definition(name)
    assert role is not None
    return [{k: list(v) for k, v in p.items()} for p in role.permissions]


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", f"{P}/enrollments/read", True),
        ("*/read", f"{P}/enrollments/read", True),
        ("*/read", REVEAL, False),
        (f"{P}/*", REVEAL, True),
        (f"{P}/*/read", f"{P}/enrollments/read", True),
        ("Microsoft.Devices/*/enrollments/*", f"{P}/enrollments/delete", True),
        ("Microsoft.Devices/*/enrollments/*", f"{P}/enrollmentGroups/delete", False),
        (f"{P}/attestationmechanism/*", REVEAL, True),
        ("*/details/*", REVEAL, True),
        ("microsoft.devices/PROVISIONINGSERVICES/*/READ", f"{P}/enrollments/read", True),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/roleAssignments/delete",
            True,
        ),
        # "." is literal, not a regex wildcard.
        ("Microsoft.Devices/x", "MicrosoftXDevices/x", False),
        (f"{P}/enrollments/read", f"{P}/enrollments/readx", False),
        (f"{P}/enrollments/read", f"x{P}/enrollments/read", False),
    ],
)
def test_action_matches(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


def test_not_data_actions_subtract_inside_their_block_only() -> None:
    """A notDataActions entry removes the action from its block, not from other blocks."""
    narrowed = {"dataActions": [f"{P}/*"], "notDataActions": [f"{P}/*/delete"]}
    assert not data_action_allowed([narrowed], f"{P}/enrollments/delete")
    assert data_action_allowed([narrowed], f"{P}/enrollments/write")
    granting = {"dataActions": [f"{P}/enrollments/delete"], "notDataActions": []}
    assert data_action_allowed([narrowed, granting], f"{P}/enrollments/delete")
    assert not data_action_allowed([narrowed, granting], f"{P}/enrollmentGroups/delete")


def test_control_plane_actions_never_grant_data_actions() -> None:
    assert not data_action_allowed([{"actions": ["*"], "notActions": []}], f"{P}/enrollments/read")
    assert not data_action_allowed([], f"{P}/enrollments/read")
    assert not data_action_allowed([{"dataActions": None, "notDataActions": None}], REVEAL)


def test_builtin_role_data_actions(tenant: Tenant) -> None:
    """Data Contributor allows all nine, Data Reader the three reads, Owner/Contributor/Reader none."""
    assert allowed(role_blocks(tenant, DATA_CONTRIBUTOR_ID)) == set(DPS_DATA_ACTIONS)
    assert allowed(role_blocks(tenant, DATA_READER_ID)) == READS
    for name in ("Owner", "Contributor", "Reader"):
        assert allowed(role_blocks(tenant, name)) == set(), name


def test_builtin_role_ids_are_the_real_ones(tenant: Tenant) -> None:
    contributor = tenant.role_definition("Device Provisioning Service Data Contributor")
    reader = tenant.role_definition("Device Provisioning Service Data Reader")
    assert contributor is not None
    assert reader is not None
    assert contributor.id == "dfce44e4-17b7-4bd1-a6d1-04996ec95633"
    assert reader.id == "10745317-c249-44a1-a5ce-3a4353c0bbd8"
    assert contributor.permissions[0]["dataActions"] == (f"{P}/*",)
    assert reader.permissions[0]["dataActions"] == (f"{P}/*/read",)


def test_custom_roles_of_default_tenant(tenant: Tenant) -> None:
    assert allowed(role_blocks(tenant, "DPS Enrollment Key Reader")) == READS | {REVEAL}
    assert allowed(role_blocks(tenant, "DPS Operator (no delete)")) == READS | WRITES


@pytest.mark.parametrize(
    ("user", "scope", "expected"),
    [
        # Data Contributor on both resource groups.
        ("dana.contributor", PROD, set(DPS_DATA_ACTIONS)),
        ("dana.contributor", LAB, set(DPS_DATA_ACTIONS)),
        # Data Reader on the subscription.
        ("reggie.reader", PROD, READS),
        ("kim.keyreader", PROD, READS | {REVEAL}),
        ("nora.norole", PROD, set()),
        # Data Contributor on the management group above the subscription.
        ("ada.admin", LAB, set(DPS_DATA_ACTIONS)),
        ("audrey.auditor", PROD, READS),
        ("audrey.auditor", LAB, set()),
        # Different roles on the two instances.
        ("max.mixed", PROD, READS),
        ("max.mixed", LAB, set(DPS_DATA_ACTIONS)),
        # Through the group "IoT Fleet Operators".
        ("gina.group", PROD, set(DPS_DATA_ACTIONS)),
        ("gina.group", LAB, set()),
        ("oscar.operator", PROD, READS | WRITES),
    ],
)
def test_permission_blocks_of_demo_users(
    tenant: Tenant, user: str, scope: str, expected: set[str]
) -> None:
    principal = tenant.user_by_username(f"{user}@contoso-iot.example")
    assert principal is not None
    assert allowed(permission_blocks(tenant, principal.object_id, scope)) == expected


def test_permission_blocks_are_raw_and_one_per_assignment(tenant: Tenant) -> None:
    """Blocks come back unexpanded, with control and data lists, one per applicable assignment."""
    oscar = tenant.user_by_username("oscar.operator@contoso-iot.example")
    assert oscar is not None
    blocks = permission_blocks(tenant, oscar.object_id, PROD)
    assert blocks == [
        {
            "actions": [],
            "notActions": [],
            "dataActions": [f"{P}/*"],
            "notDataActions": [f"{P}/*/delete", f"{P}/attestationmechanism/*"],
        },
        {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []},
    ]


def test_permission_blocks_ignore_case_and_double_slashes_of_scope(tenant: Tenant) -> None:
    kim = tenant.user_by_username("kim.keyreader@contoso-iot.example")
    assert kim is not None
    odd = PROD.lower().replace("microsoft.devices/", "Microsoft.Devices//")
    assert permission_blocks(tenant, kim.object_id, odd) == permission_blocks(
        tenant, kim.object_id, PROD
    )


def test_assignment_below_the_scope_does_not_apply(tenant: Tenant) -> None:
    """A role on a DPS instance does not show at its resource group or on a sibling."""
    kim = tenant.user_by_username("kim.keyreader@contoso-iot.example")
    assert kim is not None
    rg = f"{SUB}/resourceGroups/rg-iot-fleet"
    assert permission_blocks(tenant, kim.object_id, rg) == []
    audrey = tenant.user_by_username("audrey.auditor@contoso-iot.example")
    assert audrey is not None
    assert permission_blocks(tenant, audrey.object_id, LAB) == []


def test_service_principals_get_their_assignments(tenant: Tenant) -> None:
    writer = next(a for a in tenant.apps if a.name == "fleet-automation-writer")
    reader = next(a for a in tenant.apps if a.name == "fleet-automation-reader")
    assert allowed(permission_blocks(tenant, writer.service_principal_id, PROD)) == set(
        DPS_DATA_ACTIONS
    )
    assert allowed(permission_blocks(tenant, reader.service_principal_id, PROD)) == READS
    assert permission_blocks(tenant, writer.service_principal_id, LAB) == []
