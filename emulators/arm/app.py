"""The ARM emulator: "Permissions - List For Resource", the DPS resource and its certificates.

``GET {scope}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01`` for a
resource or resource-group scope answers ``{"value": [one raw block per applicable role
assignment], "nextLink": null}``. Paths match case-insensitively with ``//`` collapsed
(the Python SDK emits ``resourcegroups`` and a double slash). Bearer tokens must carry an
ARM audience and come from the Entra emulator; errors use ARM's ``{"error": {...}}`` shape.
The certificates API of the DPS resource provider is in :mod:`emulators.arm.certificates`;
every operation is authorised from the ``actions`` of the caller's role assignments.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.arm.certificates import CertificateStore, ProviderError
from emulators.common.context import ARM_AUDIENCES, EmulatorContext
from emulators.common.keys import InvalidToken
from emulators.common.rbac import action_matches, permission_blocks
from emulators.common.tenant import DpsInstance

log = logging.getLogger("emulators.arm")

PERMISSIONS_API_VERSIONS = ("2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview")
DPS_API_VERSIONS = (
    "2020-03-01",
    "2021-10-15",
    "2022-02-05",
    "2022-12-12",
    "2023-03-01-preview",
    "2025-02-01-preview",
    "2026-11-01",
)
PERMISSIONS_SUFFIX = ("providers", "microsoft.authorization", "permissions")
DPS_TYPE = ("providers", "microsoft.devices", "provisioningservices")
CERT_ACTIONS = {
    ("GET", ""): "certificates/read",
    ("PUT", ""): "certificates/write",
    ("DELETE", ""): "certificates/delete",
    ("POST", "generateverificationcode"): "certificates/generateVerificationCode/action",
    ("POST", "verify"): "certificates/verify/action",
}
# ARM accepts both audiences with and without the trailing slash.
ACCEPTED_AUDIENCES = sorted(
    {a for aud in ARM_AUDIENCES for a in (aud.rstrip("/"), aud.rstrip("/") + "/")}
)


ALLOWED_AUDIENCES_TEXT = ",".join(f"'{a}'" for a in ACCEPTED_AUDIENCES)


class ArmError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, www_authenticate: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.www_authenticate = www_authenticate


@dataclass(frozen=True)
class Target:
    """What a request path names: a scope and, for a resource, the DPS instance."""

    scope: str
    dps: DpsInstance | None
    kind: str  # "resource" | "resourceGroup"


def _segments(path: str) -> list[str]:
    return [p for p in re.split(r"/+", path) if p]


def _error_response(exc: ArmError) -> JSONResponse:
    headers = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-failure-cause": "gateway"}
    if exc.www_authenticate:
        headers["WWW-Authenticate"] = exc.www_authenticate
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}},
        status_code=exc.status,
        headers=headers,
    )


def _not_found(original: str) -> ArmError:
    return ArmError(
        404,
        "NotFound",
        f"No HTTP resource was found that matches the request URI '{original[:300]}'.",
    )


class ArmApp:
    """The request handling of the ARM emulator for one context."""

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self.tenant = ctx.tenant
        self.certificates = CertificateStore(ctx.state_dir)
        ctx.arm_certificates = self.certificates
        self.challenge = f'Bearer authorization_uri="{ctx.authority}", error="invalid_token", error_description="{{}}"'

    def unauthorized(self, code: str, message: str) -> ArmError:
        return ArmError(
            401, code, message, www_authenticate=self.challenge.format(message.replace('"', "'"))
        )

    def authenticate(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        if not header:
            raise self.unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self.unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        try:
            claims = self.ctx.keys.verify(
                token.strip(),
                audiences=ACCEPTED_AUDIENCES,
                issuers=[self.ctx.v1_issuer, self.ctx.v2_issuer],
            )
        except InvalidToken as exc:
            if "expired" in exc.reason:
                now = dt.datetime.now(dt.UTC).strftime("%m/%d/%Y %H:%M:%S")
                raise self.unauthorized(
                    "ExpiredAuthenticationToken",
                    f"The access token expiry UTC time is earlier than current UTC time '{now}'.",
                ) from None
            if "audience" in exc.reason:
                raise self.unauthorized(
                    "InvalidAuthenticationTokenAudience",
                    "The access token has been obtained for wrong audience or resource. It should "
                    "exactly match with one of the allowed audiences "
                    f"{ALLOWED_AUDIENCES_TEXT}.",
                ) from None
            raise self.unauthorized(
                "InvalidAuthenticationToken", f"The access token is invalid: {exc.reason}."
            ) from None
        if claims.get("tid") != self.tenant.tenant_id or not claims.get("oid"):
            raise self.unauthorized(
                "InvalidAuthenticationTokenTenant",
                "The access token is from the wrong issuer. It must match the tenant associated with this subscription.",
            )
        return claims

    @staticmethod
    def api_version(request: Request, supported: tuple[str, ...]) -> None:
        given = request.query_params.get("api-version")
        if not given:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if given not in supported:
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{given[:40]}' is invalid. The supported versions are '{','.join(supported)}'.",
            )

    def _instances_in_group(self, segs: list[str], original: str) -> list[DpsInstance]:
        """Check ``/subscriptions/{sub}/resourceGroups/{rg}``; return the group's instances."""
        low = [s.lower() for s in segs]
        if len(low) < 2 or low[0] != "subscriptions":
            raise _not_found(original)
        sub = segs[1]
        tenant = self.tenant
        known_subs = {d.subscription_id.lower() for d in tenant.dps_instances} | {
            s.lower() for m in tenant.management_groups for s in m.subscriptions
        }
        if sub.lower() not in known_subs:
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{sub[:80]}' could not be found."
            )
        if len(low) < 4 or low[2] != "resourcegroups":
            raise _not_found(original)
        rg = segs[3]
        in_rg = [
            d
            for d in tenant.dps_instances
            if d.subscription_id.lower() == sub.lower() and d.resource_group.lower() == rg.lower()
        ]
        if not in_rg:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{rg[:90]}' could not be found."
            )
        return in_rg

    def resolve(self, segs: list[str], original: str) -> Target:
        """Map path segments (before /providers/Microsoft.Authorization/...) to a known scope."""
        in_rg = self._instances_in_group(segs, original)
        low = [s.lower() for s in segs]
        rg = segs[3]
        rg_scope = (
            f"/subscriptions/{in_rg[0].subscription_id}/resourceGroups/{in_rg[0].resource_group}"
        )
        if len(low) == 4:
            return Target(rg_scope, None, "resourceGroup")
        if len(low) == 7 and tuple(low[4:7]) == DPS_TYPE:
            raise _not_found(original)
        if len(low) == 8 and tuple(low[4:7]) == DPS_TYPE:
            dps = next((d for d in in_rg if d.name.lower() == low[7]), None)
            if dps is not None:
                return Target(dps.resource_id, dps, "resource")
        if len(low) >= 7 and low[4] == "providers":
            rtype = "/".join(segs[5:-1])
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{rtype[:120]}/{segs[-1][:80]}' under resource group '{rg[:90]}' was not found. "
                "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        raise _not_found(original)

    async def dispatch(self, request: Request) -> Response:
        try:
            original = request.url.path
            segs = _segments(original)
            low = [s.lower() for s in segs]
            if len(low) >= 9 and tuple(low[4:7]) == DPS_TYPE and low[8] == "certificates":
                return await self.certificate_call(request, segs, original)
            if request.method != "GET":
                raise ArmError(
                    405,
                    "MethodNotAllowed",
                    f"The requested resource does not support http method '{request.method}'.",
                )
            if len(low) >= 3 and tuple(low[-3:]) == PERMISSIONS_SUFFIX:
                return self.permissions(request, segs, original)
            if len(low) == 8 and tuple(low[4:7]) == DPS_TYPE:
                return self.dps_resource(request, segs, original)
            raise _not_found(original)
        except ArmError as exc:
            return _error_response(exc)

    def permissions(self, request: Request, segs: list[str], original: str) -> Response:
        """``GET {scope}/providers/Microsoft.Authorization/permissions``: the caller's blocks."""
        claims = self.authenticate(request)
        self.api_version(request, PERMISSIONS_API_VERSIONS)
        target = self.resolve(segs[:-3], original)
        blocks = permission_blocks(self.tenant, str(claims["oid"]), target.scope)
        return JSONResponse({"value": blocks, "nextLink": None})

    def dps_resource(self, request: Request, segs: list[str], original: str) -> Response:
        """``GET`` a provisioning service resource, for a caller allowed to read it."""
        claims = self.authenticate(request)
        self.api_version(request, DPS_API_VERSIONS)
        target = self.resolve(segs, original)
        assert target.dps is not None
        self.authorize(claims, "Microsoft.Devices/provisioningServices/read", target.scope)
        return JSONResponse(_dps_resource(self.ctx, target.dps))

    def _trusted(self, dps_id: str, pem: str) -> None:
        """Tell the DPS servers that a CA certificate of ``dps_id`` is verified."""
        for hook in list(self.ctx.ca_verified_hooks):
            hook(dps_id, pem)

    def authorize(self, claims: dict[str, Any], action: str, scope: str) -> None:
        """Raise ARM's 403 unless one of the caller's role blocks grants the control action."""
        blocks = permission_blocks(self.tenant, str(claims["oid"]), scope)
        allowed = any(
            any(action_matches(p, action) for p in b.get("actions", []))
            and not any(action_matches(p, action) for p in b.get("notActions", []))
            for b in blocks
        )
        if not allowed:
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{claims.get('upn') or claims['oid']}' with object id '{claims['oid']}' does not "
                f"have authorization to perform action '{action}' over scope '{scope}' or the "
                "scope is invalid. If access was recently granted, please refresh your credentials.",
            )

    async def certificate_call(self, request: Request, segs: list[str], original: str) -> Response:
        """Serve ``.../provisioningServices/{name}/certificates[/{cert}[/{operation}]]``."""
        low = [s.lower() for s in segs]
        method = request.method
        operation = low[10] if len(low) == 11 else ""
        if len(low) > 11 or (len(low) == 9 and method != "GET"):
            raise _not_found(original)
        if (method, operation) not in CERT_ACTIONS:
            raise ArmError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{method}'.",
            )
        claims = self.authenticate(request)
        self.api_version(request, DPS_API_VERSIONS)
        target = self.resolve(segs[:8], original)
        assert target.dps is not None
        action = "Microsoft.Devices/provisioningServices/" + CERT_ACTIONS[(method, operation)]
        self.authorize(claims, action, target.scope)
        dps_id = target.dps.resource_id
        store = self.certificates
        if_match = request.headers.get("if-match")
        try:
            if len(low) == 9:
                return JSONResponse({"value": [c.resource(dps_id) for c in store.all(dps_id)]})
            name = segs[9]
            if method == "GET" and not operation:
                return JSONResponse(store.get(dps_id, name).resource(dps_id))
            if method == "DELETE":
                store.delete(dps_id, name, if_match)
                return Response(status_code=200)
            body = await _json_body(request) if method == "PUT" or operation == "verify" else None
            if method == "PUT":
                cert, _created = store.put(dps_id, name, body, if_match)
                if cert.is_verified:
                    self._trusted(dps_id, cert.pem)
                return JSONResponse(cert.resource(dps_id))
            if operation == "generateverificationcode":
                cert = store.generate_code(dps_id, name, if_match)
                out = cert.resource(dps_id)
                out["properties"]["verificationCode"] = cert.verification_code
                return JSONResponse(out)
            cert = store.verify(dps_id, name, if_match, body)
            self._trusted(dps_id, cert.pem)
            return JSONResponse(cert.resource(dps_id))
        except ProviderError as exc:
            return JSONResponse(
                exc.body(), status_code=exc.status, headers={"x-ms-request-id": str(uuid.uuid4())}
            )


def create_app(ctx: EmulatorContext) -> Starlette:
    """Build the ARM emulator for ``ctx``."""
    arm = ArmApp(ctx)
    return Starlette(
        routes=[
            Route("/{path:path}", arm.dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        ]
    )


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        ) from None


def _masked(connection_string: str) -> str:
    """Return the connection string with its key hidden, as ARM's GET answers it."""
    parts = [p for p in connection_string.split(";") if p]
    return ";".join(
        "SharedAccessKey=****" if p.lower().startswith("sharedaccesskey=") else p for p in parts
    )


def _dps_resource(ctx: EmulatorContext, dps: DpsInstance) -> dict[str, Any]:
    """Return the ARM representation of a DPS instance (no keys: those need listKeys)."""
    return {
        "id": dps.resource_id,
        "name": dps.name,
        "type": "Microsoft.Devices/provisioningServices",
        "location": dps.location,
        "resourcegroup": dps.resource_group,
        "subscriptionid": dps.subscription_id,
        "tags": {},
        "etag": f'"{uuid.uuid5(uuid.NAMESPACE_URL, dps.resource_id)}"',
        "sku": {"name": "S1", "tier": "Standard", "capacity": dps.units},
        "properties": {
            "state": "Active",
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
            "allocationPolicy": "Hashed",
            "serviceOperationsHostName": dps.public_host,
            "deviceProvisioningHostName": "global.azure-devices-provisioning.net",
            "idScope": dps.id_scope,
            "iotHubs": [
                {
                    "name": h.name,
                    "location": h.location,
                    "connectionString": _masked(
                        h.connection_string
                        or f"HostName={h.name};SharedAccessKeyName=iothubowner;SharedAccessKey=x"
                    ),
                    "allocationWeight": h.allocation_weight,
                    "applyAllocationPolicy": h.apply_allocation_policy,
                }
                for h in dps.iot_hubs
            ],
            "emulatorHost": ctx.dps_hosts.get(dps.name, ""),
        },
    }
