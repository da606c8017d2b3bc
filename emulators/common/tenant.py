"""The emulated tenant: users, groups, app registrations, roles, assignments, DPS instances.

One JSON file describes it (schema in docs/emulators.md); ``emulators/tenants/default.json``
ships with the demo principals. Everything here is read-only after loading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.common.rbac import BUILTIN_ROLE_DEFINITIONS, RoleDefinition

DEFAULT_TENANT_FILE = Path(__file__).resolve().parent.parent / "tenants" / "default.json"


class TenantFileError(ValueError):
    """The tenant file is missing a field or holds a value of the wrong shape."""


@dataclass(frozen=True)
class User:
    object_id: str
    username: str
    password: str
    display_name: str
    given_name: str = ""
    family_name: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class Group:
    object_id: str
    display_name: str
    members: tuple[str, ...]  # object ids of users, service principals or groups


@dataclass(frozen=True)
class AppRole:
    id: str
    value: str
    display_name: str
    allowed_member_types: tuple[str, ...] = ("User",)


@dataclass(frozen=True)
class App:
    """An app registration together with its service principal."""

    name: str
    client_id: str
    service_principal_id: str
    client_secrets: tuple[str, ...] = ()
    certificates: tuple[str, ...] = ()  # PEM public certificates
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    identifier_uri: str = ""
    api_scopes: tuple[str, ...] = ()  # names, e.g. "user_impersonation"
    app_roles: tuple[AppRole, ...] = ()
    # principal object id -> app role values assigned on this app
    role_assignments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    preauthorized_clients: tuple[str, ...] = ()
    # resource audience -> delegated scopes granted with admin consent
    granted_permissions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    public_client: bool = False
    access_token_version: int = 2

    @property
    def api_scope_uris(self) -> list[str]:
        base = self.identifier_uri or f"api://{self.client_id}"
        return [f"{base}/{s}" for s in self.api_scopes]


@dataclass(frozen=True)
class RoleAssignment:
    id: str
    principal_id: str
    principal_type: str  # User | Group | ServicePrincipal
    role_definition_id: str
    scope: str


@dataclass(frozen=True)
class AccessPolicy:
    key_name: str
    primary_key: str
    secondary_key: str
    rights: tuple[str, ...]


@dataclass(frozen=True)
class IotHub:
    name: str  # host name, e.g. hub-fleet-prod-1.azure-devices.net
    location: str
    connection_string: str = ""
    allocation_weight: int | None = None
    apply_allocation_policy: bool = True


@dataclass(frozen=True)
class DpsInstance:
    name: str
    subscription_id: str
    resource_group: str
    id_scope: str
    units: int
    access_policies: tuple[AccessPolicy, ...]
    iot_hubs: tuple[IotHub, ...]
    location: str = "westeurope"
    operations_per_minute: int | None = None  # default 1,000 x units

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Devices/provisioningServices/{self.name}"
        )

    @property
    def public_host(self) -> str:
        return f"{self.name}.azure-devices-provisioning.net"


@dataclass(frozen=True)
class ManagementGroup:
    name: str
    parent: str | None
    subscriptions: tuple[str, ...]


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    domain: str
    display_name: str
    users: tuple[User, ...]
    groups: tuple[Group, ...]
    apps: tuple[App, ...]
    role_definitions: tuple[RoleDefinition, ...]
    role_assignments: tuple[RoleAssignment, ...]
    management_groups: tuple[ManagementGroup, ...]
    dps_instances: tuple[DpsInstance, ...]
    source: Path | None = None

    # -- lookups -------------------------------------------------------------
    def user_by_username(self, username: str) -> User | None:
        wanted = username.strip().lower()
        return next((u for u in self.users if u.username.lower() == wanted), None)

    def user_by_oid(self, oid: str) -> User | None:
        return next((u for u in self.users if u.object_id == oid), None)

    def app_by_client_id(self, client_id: str) -> App | None:
        return next((a for a in self.apps if a.client_id == client_id), None)

    def app_by_sp(self, oid: str) -> App | None:
        return next((a for a in self.apps if a.service_principal_id == oid), None)

    def dps_by_name(self, name: str) -> DpsInstance | None:
        wanted = name.lower()
        return next((d for d in self.dps_instances if d.name.lower() == wanted), None)

    def group_ids_of(self, principal_id: str) -> list[str]:
        """Return the groups the principal belongs to, transitively (Entra nests groups)."""
        found: list[str] = []
        frontier = [principal_id]
        while frontier:
            member = frontier.pop()
            for g in self.groups:
                if member in g.members and g.object_id not in found:
                    found.append(g.object_id)
                    frontier.append(g.object_id)
        return found

    def role_definition(self, id_or_name: str) -> RoleDefinition | None:
        key = id_or_name.rsplit("/", 1)[-1].lower()
        return next(
            (
                r
                for r in self.role_definitions
                if r.id.lower() == key or r.role_name.lower() == id_or_name.lower()
            ),
            None,
        )

    def ancestor_scopes(self, scope: str) -> list[str]:
        """Return ``scope`` and every scope above it, lowest first, management groups last."""
        parts = [p for p in scope.split("/") if p]
        chain: list[str] = []
        # A resource id is /subscriptions/S/resourceGroups/R/providers/NS/type/name[/...]
        for end in range(len(parts), 0, -1):
            prefix = "/" + "/".join(parts[:end])
            lowered = [p.lower() for p in parts[:end]]
            if lowered[-1] in ("providers", "resourcegroups", "subscriptions"):
                continue
            if len(lowered) >= 2 and lowered[-2] == "providers" and "." in lowered[-1]:
                continue  # .../providers/Microsoft.Devices is not a scope
            if len(lowered) >= 3 and lowered[-3] == "providers" and end < len(parts):
                continue  # .../providers/NS/type without a name is not a scope
            chain.append(prefix)
        sub = parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else None
        if sub:
            mg = next(
                (
                    m
                    for m in self.management_groups
                    if sub.lower() in (s.lower() for s in m.subscriptions)
                ),
                None,
            )
            while mg is not None:
                chain.append(f"/providers/Microsoft.Management/managementGroups/{mg.name}")
                parent = mg.parent
                mg = next((m for m in self.management_groups if m.name == parent), None)
        chain.append("/")
        return chain


# -- loading -------------------------------------------------------------------
def _req(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise TenantFileError(f"{where}: missing field '{key}'")
    return obj[key]


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


def _load_app(a: dict[str, Any], i: int) -> App:
    where = f"apps[{i}]"
    return App(
        name=_req(a, "name", where),
        client_id=_req(a, "client_id", where),
        service_principal_id=_req(a, "service_principal_id", where),
        client_secrets=_tuple(a.get("client_secrets")),
        certificates=_tuple(a.get("certificates")),
        redirect_uris=_tuple(a.get("redirect_uris")),
        post_logout_redirect_uris=_tuple(a.get("post_logout_redirect_uris")),
        identifier_uri=a.get("identifier_uri", ""),
        api_scopes=_tuple(a.get("api_scopes")),
        app_roles=tuple(
            AppRole(
                id=_req(r, "id", f"{where}.app_roles"),
                value=_req(r, "value", f"{where}.app_roles"),
                display_name=r.get("display_name", r["value"]),
                allowed_member_types=_tuple(r.get("allowed_member_types", ["User"])),
            )
            for r in a.get("app_roles", [])
        ),
        role_assignments={k: _tuple(v) for k, v in a.get("role_assignments", {}).items()},
        preauthorized_clients=_tuple(a.get("preauthorized_clients")),
        granted_permissions={k: _tuple(v) for k, v in a.get("granted_permissions", {}).items()},
        public_client=bool(a.get("public_client", False)),
        access_token_version=int(a.get("access_token_version", 2)),
    )


def _perm_blocks(raw: list[dict[str, Any]]) -> tuple[dict[str, tuple[str, ...]], ...]:
    keys = ("actions", "notActions", "dataActions", "notDataActions")
    return tuple({k: _tuple(b.get(k)) for k in keys} for b in raw)


def tenant_from_dict(data: dict[str, Any], source: Path | None = None) -> Tenant:
    """Build a :class:`Tenant` from the parsed JSON of a tenant file."""
    if not isinstance(data, dict):
        raise TenantFileError("the tenant file must hold a JSON object")
    custom = tuple(
        RoleDefinition(
            id=_req(r, "id", "role_definitions"),
            role_name=_req(r, "role_name", "role_definitions"),
            description=r.get("description", ""),
            role_type="CustomRole",
            permissions=_perm_blocks(_req(r, "permissions", "role_definitions")),
            assignable_scopes=_tuple(r.get("assignable_scopes", ["/"])),
        )
        for r in data.get("role_definitions", [])
    )
    tenant = Tenant(
        tenant_id=_req(data, "tenant_id", "tenant"),
        domain=_req(data, "domain", "tenant"),
        display_name=data["display_name"] if "display_name" in data else data["domain"],
        users=tuple(
            User(
                object_id=_req(u, "object_id", f"users[{i}]"),
                username=_req(u, "username", f"users[{i}]"),
                password=_req(u, "password", f"users[{i}]"),
                display_name=u.get("display_name", u["username"]),
                given_name=u.get("given_name", ""),
                family_name=u.get("family_name", ""),
                enabled=bool(u.get("enabled", True)),
            )
            for i, u in enumerate(data.get("users", []))
        ),
        groups=tuple(
            Group(
                object_id=_req(g, "object_id", f"groups[{i}]"),
                display_name=g.get("display_name", g["object_id"]),
                members=_tuple(g.get("members")),
            )
            for i, g in enumerate(data.get("groups", []))
        ),
        apps=tuple(_load_app(a, i) for i, a in enumerate(data.get("apps", []))),
        role_definitions=BUILTIN_ROLE_DEFINITIONS + custom,
        role_assignments=(),
        management_groups=tuple(
            ManagementGroup(
                name=_req(m, "name", "management_groups"),
                parent=m.get("parent"),
                subscriptions=_tuple(m.get("subscriptions")),
            )
            for m in data.get("management_groups", [])
        ),
        dps_instances=tuple(
            DpsInstance(
                name=_req(d, "name", f"dps_instances[{i}]"),
                subscription_id=_req(d, "subscription_id", f"dps_instances[{i}]"),
                resource_group=_req(d, "resource_group", f"dps_instances[{i}]"),
                id_scope=_req(d, "id_scope", f"dps_instances[{i}]"),
                units=int(d.get("units", 1)),
                location=d.get("location", "westeurope"),
                operations_per_minute=d.get("operations_per_minute"),
                access_policies=tuple(
                    AccessPolicy(
                        key_name=_req(p, "key_name", "access_policies"),
                        primary_key=_req(p, "primary_key", "access_policies"),
                        secondary_key=_req(p, "secondary_key", "access_policies"),
                        rights=_tuple(_req(p, "rights", "access_policies")),
                    )
                    for p in _req(d, "access_policies", f"dps_instances[{i}]")
                ),
                iot_hubs=tuple(
                    IotHub(
                        name=_req(h, "name", "iot_hubs"),
                        location=h.get("location", d.get("location", "westeurope")),
                        connection_string=h.get("connection_string", ""),
                        allocation_weight=h.get("allocation_weight"),
                        apply_allocation_policy=bool(h.get("apply_allocation_policy", True)),
                    )
                    for h in d.get("iot_hubs", [])
                ),
            )
            for i, d in enumerate(data.get("dps_instances", []))
        ),
        source=source,
    )
    assignments = []
    for i, ra in enumerate(data.get("role_assignments", [])):
        where = f"role_assignments[{i}]"
        role = tenant.role_definition(_req(ra, "role", where))
        if role is None:
            raise TenantFileError(f"{where}: unknown role '{ra['role']}'")
        assignments.append(
            RoleAssignment(
                id=ra.get("id") or f"ra-{i}",
                principal_id=_req(ra, "principal_id", where),
                principal_type=ra.get("principal_type", "User"),
                role_definition_id=role.id,
                scope=_req(ra, "scope", where),
            )
        )
    return Tenant(**{**tenant.__dict__, "role_assignments": tuple(assignments)})


def load_tenant(path: Path | str | None = None) -> Tenant:
    """Read and validate a tenant file (the shipped default when ``path`` is None)."""
    p = Path(path) if path else DEFAULT_TENANT_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TenantFileError(f"tenant file not found: {p}") from exc
    except json.JSONDecodeError as exc:
        raise TenantFileError(f"tenant file {p} is not valid JSON: {exc}") from exc
    return tenant_from_dict(data, source=p)
