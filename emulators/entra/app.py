"""The Entra ID emulator: v2.0 endpoints that unmodified MSAL and azure-identity talk to.

Routes (those of Entra ID's v2.0 endpoints):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and the v1 document
- ``GET /{tenant}/discovery/v2.0/keys``, ``/common/discovery/keys``: JWKS
- ``GET /common/discovery/instance``: MSAL instance discovery
- ``GET|POST /{tenant}/oauth2/v2.0/authorize``, ``POST /{tenant}/login``: sign-in
- ``POST /{tenant}/oauth2/v2.0/token``: the four grants
- ``GET|POST /{tenant}/oauth2/v2.0/logout``
- ``/_emulator/...``: control routes for tests, answered to loopback clients only
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common.context import EmulatorContext
from emulators.common.net import is_loopback
from emulators.entra.authorize import BrowserFlows
from emulators.entra.discovery import instance_metadata, jwks, openid_configuration, resolve_tenant
from emulators.entra.errors import EntraError, error_response, tenant_not_found
from emulators.entra.forms import read_body, read_form
from emulators.entra.grants import TokenRequest, TokenService
from emulators.entra.pages import error_page
from emulators.entra.scopes import ResourceCatalog
from emulators.entra.store import EntraStore
from emulators.entra.tokens import TokenMinter

log = logging.getLogger("emulators.entra")

DISCOVERY_CACHE = {"Cache-Control": "max-age=86400, private"}
KEYS_CACHE = {"Cache-Control": "max-age=3600, public"}
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
MAX_LIFETIME = 10 * 365 * 24 * 3600
LIFETIME_FIELDS = ("access_token", "refresh_token", "code")
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]

Endpoint = Callable[[Request], Awaitable[Response]]
# A per-tenant discovery document: (context, tenant segment as requested) -> JSON.
TenantDocument = Callable[[EmulatorContext, str], dict[str, Any]]

# The four per-tenant discovery documents: path, builder, cache headers.
TENANT_DOCUMENTS: tuple[tuple[str, TenantDocument, dict[str, str]], ...] = (
    ("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, DISCOVERY_CACHE),
    (
        "/{tenant}/.well-known/openid-configuration",
        functools.partial(openid_configuration, v2=False),
        DISCOVERY_CACHE,
    ),
    ("/{tenant}/discovery/v2.0/keys", jwks, KEYS_CACHE),
    ("/{tenant}/discovery/keys", functools.partial(jwks, v2=False), KEYS_CACHE),
)


def _loopback_only(endpoint: Endpoint) -> Endpoint:
    """Answer 403 to any caller that is not on the local machine."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not is_loopback(request.scope.get("client")):
            return JSONResponse(
                {"error": "forbidden", "message": "control routes answer loopback clients only"},
                status_code=403,
            )
        return await endpoint(request)

    return guarded


def lifetime_updates(data: Any) -> dict[str, int]:
    """Validate a ``/_emulator/lifetimes`` body; return the lifetimes (seconds) it sets."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    updates: dict[str, int] = {}
    for name in LIFETIME_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LIFETIME:
            raise ValueError(f"'{name}' must be an integer number of seconds")
        updates[name] = value
    unknown = set(data) - set(LIFETIME_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return updates


class EntraApp:
    """The route handlers of the Entra ID emulator for one context."""

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self.store = EntraStore(ctx.state_dir)
        catalog = ResourceCatalog(ctx.tenant)
        self.tokens = TokenService(ctx, self.store, catalog, TokenMinter(ctx, self.store))
        self.browser = BrowserFlows(ctx, self.store, catalog)

    def routes(self) -> list[Route]:
        documents = [
            Route(path, self._tenant_document(build, cache), methods=["GET"])
            for path, build, cache in TENANT_DOCUMENTS
        ]
        return [
            Route("/_emulator/rotate-keys", _loopback_only(self.rotate_keys), methods=["POST"]),
            Route("/_emulator/lifetimes", _loopback_only(self.lifetimes), methods=["GET", "POST"]),
            Route("/_emulator/revoke", _loopback_only(self.revoke), methods=["POST"]),
            Route(
                "/_emulator/expire-refresh-tokens", _loopback_only(self.expire), methods=["POST"]
            ),
            Route("/error", self.error_info, methods=["GET"]),
            Route("/common/discovery/instance", self.instance, methods=["GET"]),
            *documents,
            Route(
                "/{tenant}/oauth2/v2.0/authorize", self.browser.authorize, methods=["GET", "POST"]
            ),
            Route("/{tenant}/login", self.login, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=ALL_METHODS),
            Route("/{tenant}/oauth2/v2.0/logout", self.browser.logout, methods=["GET", "POST"]),
            Route("/{path:path}", self.not_found, methods=ALL_METHODS),
        ]

    def _entra_error(self, request: Request, exc: EntraError) -> JSONResponse:
        return error_response(exc, request, self.ctx.entra_url)

    # -- discovery ---------------------------------------------------------------
    def _tenant_document(self, build: TenantDocument, cache: dict[str, str]) -> Endpoint:
        """Return the handler that serves one per-tenant discovery document."""

        async def document(request: Request) -> Response:
            segment = request.path_params["tenant"]
            if resolve_tenant(self.ctx, segment) is None:
                return self._entra_error(request, tenant_not_found(segment[:100]))
            return JSONResponse(build(self.ctx, segment), headers=cache)

        return document

    async def instance(self, request: Request) -> Response:
        doc = instance_metadata(self.ctx, request.query_params.get("authorization_endpoint"))
        if doc is None:
            return JSONResponse(
                {
                    "error": "invalid_instance",
                    "error_description": "AADSTS50049: Unknown or invalid instance.",
                    "error_codes": [50049],
                },
                status_code=400,
            )
        return JSONResponse(doc, headers=DISCOVERY_CACHE)

    # -- token -------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        try:
            body = self.tokens.handle(await self._token_request(request))
        except EntraError as exc:
            log.info("token request refused: %s %s", exc.error, exc.code)
            return self._entra_error(request, exc)
        return JSONResponse(body, headers=NO_STORE)

    async def _token_request(self, request: Request) -> TokenRequest:
        """Read a token request: POST only, to a known tenant, with a form body."""
        segment = request.path_params["tenant"]
        if request.method != "POST":
            raise EntraError(
                "invalid_request",
                900561,
                f"The endpoint only accepts POST, OPTIONS requests. Received a "
                f"{request.method} request.",
            )
        if resolve_tenant(self.ctx, segment) is None:
            raise tenant_not_found(segment[:100])
        form = await read_form(request)
        return TokenRequest(
            form, request.headers.get("authorization", ""), self._token_endpoints(segment)
        )

    def _token_endpoints(self, segment: str) -> set[str]:
        """Return the token endpoint URLs a client assertion may name as its audience."""
        tenant = self.ctx.tenant
        segments = {segment, tenant.tenant_id, tenant.domain, "common", "organizations"}
        base = self.ctx.entra_url
        endpoints = {f"{base}/{s}/oauth2/v2.0/token" for s in segments}
        return endpoints | {f"{base}/{s}/oauth2/token" for s in segments}

    async def error_info(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        return error_page(
            int(code) if code.isdigit() and len(code) < 10 else 0,
            "See the error description returned to the application.",
            status=200,
        )

    async def login(self, request: Request) -> Response:
        if resolve_tenant(self.ctx, request.path_params["tenant"]) is None:
            return error_page(90002, "Tenant not found.")
        return await self.browser.login(request)

    async def not_found(self, request: Request) -> Response:
        return JSONResponse(
            {
                "error": "not_found",
                "error_description": f"No route for {request.method} {request.url.path[:200]}",
            },
            status_code=404,
        )

    # -- control routes (loopback only) -------------------------------------------
    async def rotate_keys(self, request: Request) -> Response:
        key = self.ctx.keys.rotate()
        return JSONResponse(
            {"kid": key.kid, "published": [k["kid"] for k in self.ctx.keys.jwks()["keys"]]}
        )

    async def lifetimes(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                updates = lifetime_updates(
                    json.loads(await read_body(request, limit=4096) or b"{}")
                )
            except (ValueError, EntraError) as exc:
                return JSONResponse(
                    {"error": "invalid_request", "message": str(exc)}, status_code=400
                )
            for name, value in updates.items():
                setattr(self.store.lifetimes, name, value)
        return JSONResponse(self.store.lifetimes.as_dict())

    def _user_param(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        username = request.query_params.get("username")
        if not username:
            return None, None
        user = self.ctx.tenant.user_by_username(username)
        if user is None:
            return None, JSONResponse(
                {"error": "not_found", "message": "no such user"}, status_code=404
            )
        return user.object_id, None

    async def revoke(self, request: Request) -> Response:
        oid, missing = self._user_param(request)
        if missing is not None:
            return missing
        return JSONResponse({"revoked": self.store.revoke_user(oid)})

    async def expire(self, request: Request) -> Response:
        oid, missing = self._user_param(request)
        if missing is not None:
            return missing
        return JSONResponse({"expired": self.store.expire_user(oid)})


def create_app(ctx: EmulatorContext) -> Starlette:
    """Build the Entra ID emulator for ``ctx``."""
    entra = EntraApp(ctx)
    app = Starlette(routes=entra.routes())
    app.state.store = entra.store
    return app
