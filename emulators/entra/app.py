"""The Entra ID emulator: v2.0 endpoints that unmodified MSAL and azure-identity talk to.

Routes (reference/identity §3.1):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and the v1 document
- ``GET /{tenant}/discovery/v2.0/keys``, ``/common/discovery/keys``: JWKS
- ``GET /common/discovery/instance``: MSAL instance discovery
- ``GET|POST /{tenant}/oauth2/v2.0/authorize``, ``POST /{tenant}/login``: sign-in
- ``POST /{tenant}/oauth2/v2.0/token``: the four grants
- ``GET|POST /{tenant}/oauth2/v2.0/logout``
- ``/_emulator/...``: control routes for tests, answered to loopback clients only
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common.context import EmulatorContext
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
LOOPBACK_CLIENTS = ("127.0.0.1", "::1")
MAX_LIFETIME = 10 * 365 * 24 * 3600


def create_app(ctx: EmulatorContext) -> Starlette:
    """Build the Entra ID emulator for ``ctx``."""
    store = EntraStore(ctx.state_dir)
    catalog = ResourceCatalog(ctx.tenant)
    minter = TokenMinter(ctx, store)
    tokens = TokenService(ctx, store, catalog, minter)
    browser = BrowserFlows(ctx, store, catalog)

    def entra_error(request: Request, exc: EntraError) -> JSONResponse:
        return error_response(exc, request, ctx.entra_url)

    def unknown_tenant(request: Request) -> JSONResponse:
        return entra_error(request, tenant_not_found(request.path_params["tenant"][:100]))

    # -- discovery ---------------------------------------------------------------
    async def openid_v2(request: Request) -> Response:
        segment = request.path_params["tenant"]
        if resolve_tenant(ctx, segment) is None:
            return unknown_tenant(request)
        return JSONResponse(openid_configuration(ctx, segment), headers=DISCOVERY_CACHE)

    async def openid_v1(request: Request) -> Response:
        segment = request.path_params["tenant"]
        if resolve_tenant(ctx, segment) is None:
            return unknown_tenant(request)
        return JSONResponse(openid_configuration(ctx, segment, v2=False), headers=DISCOVERY_CACHE)

    async def keys_v2(request: Request) -> Response:
        segment = request.path_params["tenant"]
        if resolve_tenant(ctx, segment) is None:
            return unknown_tenant(request)
        return JSONResponse(jwks(ctx, segment), headers={"Cache-Control": "max-age=3600, public"})

    async def keys_v1(request: Request) -> Response:
        segment = request.path_params["tenant"]
        if resolve_tenant(ctx, segment) is None:
            return unknown_tenant(request)
        return JSONResponse(
            jwks(ctx, segment, v2=False), headers={"Cache-Control": "max-age=3600, public"}
        )

    async def instance(request: Request) -> Response:
        doc = instance_metadata(ctx, request.query_params.get("authorization_endpoint"))
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
    async def token(request: Request) -> Response:
        segment = request.path_params["tenant"]
        try:
            if request.method != "POST":
                raise EntraError(
                    "invalid_request",
                    900561,
                    f"The endpoint only accepts POST, OPTIONS requests. Received a "
                    f"{request.method} request.",
                )
            if resolve_tenant(ctx, segment) is None:
                raise tenant_not_found(segment[:100])
            form = await read_form(request)
            segments = {segment, ctx.tenant.tenant_id, ctx.tenant.domain, "common", "organizations"}
            endpoints = {f"{ctx.entra_url}/{s}/oauth2/v2.0/token" for s in segments}
            endpoints |= {f"{ctx.entra_url}/{s}/oauth2/token" for s in segments}
            body = tokens.handle(
                TokenRequest(form, request.headers.get("authorization", ""), endpoints)
            )
        except EntraError as exc:
            log.info("token request refused: %s %s", exc.error, exc.code)
            return entra_error(request, exc)
        return JSONResponse(
            body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        )

    async def error_info(request: Request) -> Response:
        code = request.query_params.get("code", "")
        return error_page(
            int(code) if code.isdigit() and len(code) < 10 else 0,
            "See the error description returned to the application.",
            status=200,
        )

    # -- control routes ----------------------------------------------------------
    def _loopback_only(request: Request) -> JSONResponse | None:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK_CLIENTS:
            return JSONResponse(
                {"error": "forbidden", "message": "control routes answer loopback clients only"},
                status_code=403,
            )
        return None

    async def rotate_keys(request: Request) -> Response:
        if (denied := _loopback_only(request)) is not None:
            return denied
        key = ctx.keys.rotate()
        return JSONResponse(
            {"kid": key.kid, "published": [k["kid"] for k in ctx.keys.jwks()["keys"]]}
        )

    async def lifetimes(request: Request) -> Response:
        if (denied := _loopback_only(request)) is not None:
            return denied
        if request.method == "POST":
            try:
                raw = await read_body(request, limit=4096)
                data: Any = json.loads(raw or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                updates: dict[str, int] = {}
                for name in ("access_token", "refresh_token", "code"):
                    if name in data:
                        value = data[name]
                        if (
                            not isinstance(value, int)
                            or isinstance(value, bool)
                            or not 0 <= value <= MAX_LIFETIME
                        ):
                            raise ValueError(f"'{name}' must be an integer number of seconds")
                        updates[name] = value
                unknown = set(data) - {"access_token", "refresh_token", "code"}
                if unknown:
                    raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
            except (ValueError, EntraError) as exc:
                return JSONResponse(
                    {"error": "invalid_request", "message": str(exc)}, status_code=400
                )
            for name, value in updates.items():
                setattr(store.lifetimes, name, value)
        return JSONResponse(store.lifetimes.as_dict())

    def _user_param(request: Request) -> tuple[str | None, JSONResponse | None]:
        username = request.query_params.get("username")
        if not username:
            return None, None
        user = ctx.tenant.user_by_username(username)
        if user is None:
            return None, JSONResponse(
                {"error": "not_found", "message": "no such user"}, status_code=404
            )
        return user.object_id, None

    async def revoke(request: Request) -> Response:
        if (denied := _loopback_only(request)) is not None:
            return denied
        oid, missing = _user_param(request)
        if missing is not None:
            return missing
        return JSONResponse({"revoked": store.revoke_user(oid)})

    async def expire(request: Request) -> Response:
        if (denied := _loopback_only(request)) is not None:
            return denied
        oid, missing = _user_param(request)
        if missing is not None:
            return missing
        return JSONResponse({"expired": store.expire_user(oid)})

    async def not_found(request: Request) -> Response:
        return JSONResponse(
            {
                "error": "not_found",
                "error_description": f"No route for {request.method} {request.url.path[:200]}",
            },
            status_code=404,
        )

    async def login(request: Request) -> Response:
        if resolve_tenant(ctx, request.path_params["tenant"]) is None:
            return error_page(90002, "Tenant not found.")
        return await browser.login(request)

    routes = [
        Route("/_emulator/rotate-keys", rotate_keys, methods=["POST"]),
        Route("/_emulator/lifetimes", lifetimes, methods=["GET", "POST"]),
        Route("/_emulator/revoke", revoke, methods=["POST"]),
        Route("/_emulator/expire-refresh-tokens", expire, methods=["POST"]),
        Route("/error", error_info, methods=["GET"]),
        Route("/common/discovery/instance", instance, methods=["GET"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_v2, methods=["GET"]),
        Route("/{tenant}/.well-known/openid-configuration", openid_v1, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys_v2, methods=["GET"]),
        Route("/{tenant}/discovery/keys", keys_v1, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/authorize", browser.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/login", login, methods=["POST"]),
        Route(
            "/{tenant}/oauth2/v2.0/token", token, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
        ),
        Route("/{tenant}/oauth2/v2.0/logout", browser.logout, methods=["GET", "POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app
