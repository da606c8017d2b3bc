"""Azure RBAC as the emulators need it: built-in DPS roles, assignments, data-action checks.

Semantics follow Azure RBAC's: wildcards match any run of characters (``/``
included), comparisons ignore case, ``notDataActions`` subtract inside one permission
block, blocks are unioned, assignments inherit down the scope tree and through groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulators.common.tenant import Tenant

DPS_DATA_ACTIONS = (
    "Microsoft.Devices/provisioningServices/enrollments/read",
    "Microsoft.Devices/provisioningServices/enrollments/write",
    "Microsoft.Devices/provisioningServices/enrollments/delete",
    "Microsoft.Devices/provisioningServices/enrollmentGroups/read",
    "Microsoft.Devices/provisioningServices/enrollmentGroups/write",
    "Microsoft.Devices/provisioningServices/enrollmentGroups/delete",
    "Microsoft.Devices/provisioningServices/registrationStates/read",
    "Microsoft.Devices/provisioningServices/registrationStates/delete",
    "Microsoft.Devices/provisioningServices/attestationmechanism/details/action",
)

DATA_CONTRIBUTOR_ID = "dfce44e4-17b7-4bd1-a6d1-04996ec95633"
DATA_READER_ID = "10745317-c249-44a1-a5ce-3a4353c0bbd8"


@dataclass(frozen=True)
class RoleDefinition:
    """An Azure role definition, built in or from the tenant file."""

    id: str  # the GUID name
    role_name: str
    description: str
    role_type: str  # BuiltInRole | CustomRole
    permissions: tuple[dict[str, tuple[str, ...]], ...]
    assignable_scopes: tuple[str, ...] = ("/",)


def _builtin_role(id_: str, name: str, description: str, **block: list[str]) -> RoleDefinition:
    """Return a built-in role with one permission block (absent keys are empty)."""
    keys = ("actions", "notActions", "dataActions", "notDataActions")
    permissions = ({k: tuple(block.get(k, [])) for k in keys},)
    return RoleDefinition(id_, name, description, "BuiltInRole", permissions)


BUILTIN_ROLE_DEFINITIONS = (
    _builtin_role(
        DATA_CONTRIBUTOR_ID,
        "Device Provisioning Service Data Contributor",
        "Allows for full access to Device Provisioning Service data-plane operations.",
        dataActions=["Microsoft.Devices/provisioningServices/*"],
    ),
    _builtin_role(
        DATA_READER_ID,
        "Device Provisioning Service Data Reader",
        "Allows for full read access to Device Provisioning Service data-plane properties.",
        dataActions=["Microsoft.Devices/provisioningServices/*/read"],
    ),
    _builtin_role(
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Owner",
        "Grants full access to manage all resources.",
        actions=["*"],
    ),
    _builtin_role(
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles.",
        actions=["*"],
        notActions=[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ],
    ),
    _builtin_role(
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Reader",
        "View all resources, but does not allow you to make any changes.",
        actions=["*/read"],
    ),
)


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(map(re.escape, pattern.split("*"))) + "$", re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """Return True if an RBAC action pattern (with ``*`` wildcards) covers ``action``."""
    return bool(_pattern(pattern).match(action))


def data_action_allowed(blocks: list[dict[str, Any]], action: str) -> bool:
    """Decide a data action over permission blocks as ARM returns them."""
    return any(
        any(action_matches(p, action) for p in (b.get("dataActions") or ()))
        and not any(action_matches(p, action) for p in (b.get("notDataActions") or ()))
        for b in blocks
    )


def _scope_key(scope: str) -> str:
    return "/" + "/".join(p.lower() for p in scope.split("/") if p)


def permission_blocks(tenant: Tenant, principal_id: str, scope: str) -> list[dict[str, list[str]]]:
    """Return one raw permission block per role-assignment block that applies at ``scope``.

    An assignment applies when it names the principal or one of its groups (transitively)
    and its scope is ``scope`` or any scope above it.
    """
    principals = {principal_id, *tenant.group_ids_of(principal_id)}
    scopes = {_scope_key(s) for s in tenant.ancestor_scopes(scope)}
    blocks: list[dict[str, list[str]]] = []
    for ra in tenant.role_assignments:
        if ra.principal_id not in principals or _scope_key(ra.scope) not in scopes:
            continue
        role = tenant.role_definition(ra.role_definition_id)
        if role is None:
            continue
        for p in role.permissions:
            blocks.append({k: list(v) for k, v in p.items()})
    return blocks
