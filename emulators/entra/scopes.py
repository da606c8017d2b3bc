"""Resolve requested scopes into one resource, its audience and the granted scope names.

Rules (Entra's v2.0 scopes): ``openid profile email offline_access`` are OIDC
scopes, not a resource; everything else names a resource by prefix (``<resource>/<scope>``)
or, for a bare name such as ``User.Read``, Microsoft Graph. A token request may name one
resource only. ``.default`` means every scope the client was granted on that resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulators.common.context import ARM_AUDIENCES, DPS_AUDIENCE
from emulators.common.tenant import App, Tenant
from emulators.entra.errors import EntraError

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH = "https://graph.microsoft.com"
GRAPH_SCOPES = ("User.Read", "email", "profile", "openid")


def _norm(uri: str) -> str:
    return uri.rstrip("/").lower()


@dataclass(frozen=True)
class Resource:
    """Something a token can be issued for: a Microsoft API or an app of the tenant."""

    key: str  # canonical audience, e.g. https://management.azure.com or the app's client id
    name: str
    scopes: tuple[str, ...]  # delegated scope names the resource exposes
    version: int  # access-token version the resource accepts
    app: App | None = None

    def audience(self, requested_prefix: str) -> str:
        """Return ``aud`` as Entra writes it: the client id (v2) or the URI as requested (v1)."""
        if self.app is not None and self.version == 2:
            return self.app.client_id
        return requested_prefix


@dataclass(frozen=True)
class ScopeRequest:
    """A parsed ``scope`` parameter."""

    oidc: frozenset[str]
    resource: Resource | None
    prefix: str  # the resource prefix as the client wrote it
    names: tuple[str, ...]  # requested scope names on the resource (".default" kept)

    @property
    def wants_refresh_token(self) -> bool:
        return "offline_access" in self.oidc

    @property
    def wants_id_token(self) -> bool:
        return "openid" in self.oidc


class ResourceCatalog:
    """Every resource of the tenant, findable by any audience prefix."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        dps = Resource(
            DPS_AUDIENCE, "Azure Device Provisioning Service", ("user_impersonation",), 1
        )
        arm = Resource(
            ARM_AUDIENCES[0], "Windows Azure Service Management API", ("user_impersonation",), 1
        )
        graph = Resource(GRAPH, "Microsoft Graph", GRAPH_SCOPES, 1)
        self.graph = graph
        self._by_prefix: dict[str, Resource] = {
            _norm(DPS_AUDIENCE): dps,
            **{_norm(a): arm for a in ARM_AUDIENCES},
            _norm(GRAPH): graph,
            "00000003-0000-0000-c000-000000000000": graph,
        }
        for app in tenant.apps:
            res = Resource(app.client_id, app.name, app.api_scopes, app.access_token_version, app)
            for prefix in {app.client_id, f"api://{app.client_id}", app.identifier_uri} - {""}:
                self._by_prefix[_norm(prefix)] = res

    def by_prefix(self, prefix: str) -> Resource | None:
        return self._by_prefix.get(_norm(prefix))

    def canonical(self, audience: str) -> str:
        """Return the canonical key of an audience (so both ARM audiences are one resource)."""
        res = self.by_prefix(audience)
        return res.key if res else _norm(audience)

    # -- parsing -----------------------------------------------------------------
    def parse(self, scope: str, *, allow_many: bool = False) -> list[ScopeRequest]:
        """Split ``scope`` by resource; raise unless exactly one resource (or ``allow_many``)."""
        items = [s for s in scope.split(" ") if s]
        oidc = frozenset(s for s in items if s.lower() in OIDC_SCOPES)
        groups: dict[str, tuple[Resource, str, list[str]]] = {}
        for s in items:
            if s.lower() in OIDC_SCOPES:
                continue
            res, prefix, name = self._resolve(s)
            entry = groups.setdefault(res.key, (res, prefix, []))
            entry[2].append(name)
        if len(groups) > 1 and not allow_many:
            raise EntraError(
                "invalid_scope",
                28000,
                f"Provided value for the input parameter scope is not valid because it "
                f"contains more than one resource. Scope {scope} is not valid.",
            )
        out = []
        for res, prefix, names in groups.values():
            _check_names(scope, res, prefix, names)
            out.append(ScopeRequest(oidc, res, prefix, tuple(names)))
        if not out:
            out.append(ScopeRequest(oidc, None, "", ()))
        return out

    def _resolve(self, item: str) -> tuple[Resource, str, str]:
        """Return (resource, prefix as written, scope name) for one non-OIDC scope item."""
        if "/" not in item:
            return self.graph, GRAPH, item
        prefix, name = item.rsplit("/", 1)
        found = self.by_prefix(prefix)
        if found is None or not name:
            raise EntraError(
                "invalid_resource",
                500011,
                f"The resource principal named {prefix or item} was not found in the "
                f"tenant named {self.tenant.display_name}. This can happen if the "
                "application has not been installed by the administrator of the "
                "tenant or consented to by any user in the tenant.",
            )
        return found, prefix, name

    # -- consent -----------------------------------------------------------------
    def granted(self, client: App, req: ScopeRequest, *, delegated: bool = True) -> list[str]:
        """Return the scope names the client may get on the resource, or raise consent_required.

        Consent is implied for the client's own API, for apps that pre-authorize it, and
        for the admin-consented ``granted_permissions`` of its registration; Graph
        ``User.Read`` is always consented (Entra's default permission).
        """
        res = req.resource
        if res is None:
            return []
        if res.key == GRAPH:
            allowed = ["User.Read"]
        elif res.app is not None and (
            res.app.client_id == client.client_id
            or client.client_id in res.app.preauthorized_clients
        ):
            allowed = list(res.scopes)
        else:
            allowed = []
            for aud, names in client.granted_permissions.items():
                if self.canonical(aud) == res.key:
                    allowed = list(names)
        wanted = allowed if ".default" in req.names else list(req.names)
        missing = [n for n in wanted if n.lower() not in {a.lower() for a in allowed}]
        if delegated and (missing or not allowed):
            raise EntraError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with "
                f"ID '{client.client_id}' named '{client.name}'. Send an interactive "
                f"authorization request for this user and resource ({res.name}).",
                suberror="consent_required",
            )
        # Keep the resource's own spelling of each scope name.
        canon = {s.lower(): s for s in res.scopes}
        return [canon.get(n.lower(), n) for n in wanted]


def _check_names(scope: str, res: Resource, prefix: str, names: list[str]) -> None:
    """Raise unless every name exists on ``res`` and ``.default`` stands alone."""
    if ".default" in names and len(names) > 1:
        raise EntraError(
            "invalid_scope",
            70011,
            f"The provided request must include a 'scope' input parameter. The "
            f"provided value for the input parameter 'scope' is not valid. "
            f"The scope {scope} is not valid. .default scope can't be combined with "
            "resource-specific scopes.",
        )
    known = {x.lower() for x in res.scopes}
    for n in names:
        if n != ".default" and n.lower() not in known:
            raise EntraError(
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. "
                f"The scope {prefix}/{n} does not exist on the resource {res.name}.",
            )
