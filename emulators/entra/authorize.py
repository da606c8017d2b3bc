"""Authorize, sign-in and logout: the browser side of the Entra emulator (§3.5).

The sign-in form carries an opaque transaction id bound to a cookie of the same browser,
so a form cannot be replayed from another browser (login CSRF). A successful sign-in
starts an emulator session (cookie ``ESTSAUTH``) that lets the next authorize skip the
password unless ``prompt=login``; ``prompt=none`` without one answers ``login_required``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from emulators.common.context import EmulatorContext
from emulators.common.tenant import App, User
from emulators.entra.discovery import resolve_tenant
from emulators.entra.errors import EntraError, missing_parameter
from emulators.entra.forms import parse_pairs, read_form
from emulators.entra.pages import error_page, form_post_page, signed_out_page, signin_page
from emulators.entra.scopes import ResourceCatalog
from emulators.entra.store import EntraStore, Session
from emulators.entra.tokens import client_info

SESSION_COOKIE = "ESTSAUTH"
BINDING_COOKIE = "esctx"
RESPONSE_MODES = ("query", "fragment", "form_post")
PROMPTS = ("login", "none", "consent", "select_account", "create")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _split(uri: str) -> tuple[str, str, int | None, str, str] | None:
    try:
        p = urlsplit(uri)
        return p.scheme.lower(), (p.hostname or "").lower(), p.port, p.path, p.query
    except ValueError:
        return None


def redirect_uri_registered(registered: tuple[str, ...], given: str) -> bool:
    """Match exactly, except that the port of an http loopback URI is ignored (as Entra does)."""
    if given in registered:
        return True
    g = _split(given)
    if g is None or g[0] != "http" or g[1] not in LOOPBACK_HOSTS:
        return False
    for r in registered:
        rr = _split(r)
        if rr and rr[0] == "http" and rr[1] == g[1] and rr[3] == g[3] and rr[4] == g[4]:
            return True
    return False


def _append(uri: str, fields: dict[str, str], *, fragment: bool = False) -> str:
    if fragment:
        return f"{uri.split('#', 1)[0]}#{urlencode(fields)}"
    sep = "&" if "?" in uri else "?"
    return f"{uri}{sep}{urlencode(fields)}"


def deliver(redirect_uri: str, mode: str, fields: dict[str, str]) -> Response:
    """Send the authorization response to the client by ``response_mode``."""
    if mode == "form_post":
        return form_post_page(redirect_uri, fields)
    return RedirectResponse(
        _append(redirect_uri, fields, fragment=mode == "fragment"),
        status_code=302,
        headers={"Cache-Control": "no-store"},
    )


class BrowserFlows:
    """The Starlette endpoints of authorize, sign-in and logout."""

    def __init__(self, ctx: EmulatorContext, store: EntraStore, catalog: ResourceCatalog) -> None:
        self.ctx = ctx
        self.store = store
        self.catalog = catalog

    # -- authorize --------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        try:
            params = parse_pairs(request.url.query)
            if request.method == "POST":
                form = await read_form(request)
                params.update(form)
            app, redirect_uri = self._client_and_redirect(request.path_params["tenant"], params)
        except EntraError as exc:
            return error_page(exc.code, exc.message)
        mode = params.get("response_mode") or "query"
        if mode not in RESPONSE_MODES:
            unsupported = EntraError(
                "invalid_request", 900144, f"The response_mode '{mode[:40]}' is not supported."
            )
            return self._redirect_error(redirect_uri, "query", params, unsupported)
        try:
            self._validate(app, params)
        except EntraError as exc:
            return self._redirect_error(redirect_uri, mode, params, exc)
        session_id = request.cookies.get(SESSION_COOKIE)
        session = self._usable_session(session_id, params)
        prompt = params.get("prompt", "")
        if prompt == "none" and session is None:
            return self._redirect_error(
                redirect_uri,
                mode,
                params,
                EntraError(
                    "login_required",
                    50058,
                    "A silent sign-in request was sent but no user is signed in.",
                ),
            )
        if session is not None and prompt not in ("login", "select_account"):
            assert session_id is not None
            return self._success(params, app, session_id, session)
        return self._show_signin(request, params, app, username=params.get("login_hint", ""))

    def _client_and_redirect(self, segment: str, params: dict[str, str]) -> tuple[App, str]:
        """Return the client app and its redirect URI; errors here are shown, not redirected."""
        if resolve_tenant(self.ctx, segment) is None:
            raise EntraError("invalid_request", 90002, f"Tenant '{segment[:100]}' not found.")
        client_id = params.get("client_id", "")
        if not client_id:
            raise missing_parameter("client_id")
        app = self.ctx.tenant.app_by_client_id(client_id)
        if app is None:
            raise EntraError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id[:100]}' was not found in the directory "
                f"'{self.ctx.tenant.display_name}'.",
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            raise missing_parameter("redirect_uri")
        if not redirect_uri_registered(app.redirect_uris, redirect_uri):
            raise EntraError(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri[:300]}' specified in the request does not match "
                f"the redirect URIs configured for the application '{app.client_id}'. Make sure "
                "the redirect URI sent in the request matches one added to your application.",
            )
        return app, redirect_uri

    def _validate(self, app: App, params: dict[str, str]) -> None:
        if params.get("response_type") != "code":
            raise EntraError(
                "unsupported_response_type",
                700054,
                f"response_type '{params.get('response_type', '')[:40]}' is not supported; "
                "use 'code'.",
            )
        scope = params.get("scope", "")
        if not scope.strip():
            raise EntraError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        for req in self.catalog.parse(scope, allow_many=True):
            try:
                self.catalog.granted(app, req)
            except EntraError as exc:
                raise EntraError("consent_required", exc.code, exc.message) from None
        _check_code_challenge(params)
        prompt = params.get("prompt")
        if prompt is not None and prompt not in PROMPTS:
            raise EntraError(
                "invalid_request", 90023, f"Unsupported 'prompt' value '{prompt[:40]}'."
            )
        if params.get("max_age") is not None:
            try:
                if int(params["max_age"]) < 0:
                    raise ValueError
            except ValueError:
                raise EntraError(
                    "invalid_request",
                    90023,
                    "The 'max_age' parameter must be a non-negative integer.",
                ) from None

    def _usable_session(self, session_id: str | None, params: dict[str, str]) -> Session | None:
        session = self.store.session(session_id)
        if session is None:
            return None
        user = self.ctx.tenant.user_by_oid(session.user_oid)
        if user is None or not user.enabled:
            return None
        hint = params.get("login_hint")
        if hint and hint.lower() != user.username.lower():
            return None
        if params.get("max_age") is not None and time.time() - session.auth_time > int(
            params["max_age"]
        ):
            return None
        return session

    def _redirect_error(
        self, redirect_uri: str, mode: str, params: dict[str, str], exc: EntraError
    ) -> Response:
        fields = {
            "error": exc.error,
            "error_description": exc.description,
            "error_uri": f"{self.ctx.entra_url}/error?code={exc.code}",
        }
        if params.get("state") is not None:
            fields["state"] = params["state"]
        return deliver(redirect_uri, mode, fields)

    def _success(
        self, params: dict[str, str], app: App, session_id: str, session: Session
    ) -> Response:
        user = self.ctx.tenant.user_by_oid(session.user_oid)
        assert user is not None
        code = self.store.new_code(
            client_id=app.client_id,
            redirect_uri=params["redirect_uri"],
            scope=params["scope"],
            user_oid=user.object_id,
            session_id=session_id,
            auth_time=session.auth_time,
            nonce=params.get("nonce"),
            code_challenge=params.get("code_challenge"),
            max_age_requested=params.get("max_age") is not None,
        )
        fields = {"code": code}
        if params.get("client_info") == "1":
            fields["client_info"] = client_info(user, self.ctx.tenant.tenant_id)
        if params.get("state") is not None:
            fields["state"] = params["state"]
        fields["session_state"] = session_id[:8] + "-emu"
        return deliver(params["redirect_uri"], params.get("response_mode") or "query", fields)

    def _show_signin(
        self,
        request: Request,
        params: dict[str, str],
        app: App,
        *,
        username: str = "",
        error: str | None = None,
        txn: str | None = None,
    ) -> Response:
        binding = request.cookies.get(BINDING_COOKIE) or secrets.token_urlsafe(32)
        if txn is None:
            txn = self.store.new_transaction(params, binding)
        resp = signin_page(
            action=f"/{request.path_params['tenant']}/login",
            txn=txn,
            tenant_name=self.ctx.tenant.display_name,
            app_name=app.name,
            username=username,
            error=error,
        )
        resp.set_cookie(
            BINDING_COOKIE, binding, path="/", secure=True, httponly=True, samesite="none"
        )
        return resp

    # -- the sign-in form --------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except EntraError as exc:
            return error_page(exc.code, exc.message)
        txn = form.get("ctx", "")
        params = (
            self.store.transaction(txn, request.cookies.get(BINDING_COOKIE, "")) if txn else None
        )
        if params is None:
            return error_page(
                50089,
                "Authentication failed due to flow token expired or invalid. Start the sign-in "
                "again from the application.",
            )
        app = self.ctx.tenant.app_by_client_id(params["client_id"])
        assert app is not None
        username = form.get("login", "").strip()
        password = form.get("passwd", "")
        user = self.ctx.tenant.user_by_username(username) if username else None
        problem = self._check_credentials(user, username, password)
        if problem:
            return self._show_signin(
                request, params, app, username=username, error=problem, txn=txn
            )
        assert user is not None
        self.store.end_transaction(txn)
        self.store.end_session(request.cookies.get(SESSION_COOKIE))
        session_id, session = self.store.new_session(user.object_id)
        resp = self._success(params, app, session_id, session)
        resp.set_cookie(
            SESSION_COOKIE, session_id, path="/", secure=True, httponly=True, samesite="none"
        )
        return resp

    def _check_credentials(self, user: User | None, username: str, password: str) -> str | None:
        if not username:
            return "AADSTS900144: Enter a valid email address, phone number, or Skype name."
        if user is None:
            return (
                "AADSTS50034: The user account does not exist in the "
                f"{self.ctx.tenant.domain} directory. To sign into this application, the "
                "account must be added to the directory."
            )
        if not secrets.compare_digest(password.encode(), user.password.encode()):
            return (
                "AADSTS50126: Error validating credentials due to invalid username or password. "
                "Your account or password is incorrect."
            )
        if not user.enabled:
            return "AADSTS50057: The user account is disabled. Your account has been locked; contact your administrator."
        return None

    # -- logout -----------------------------------------------------------------------
    async def logout(self, request: Request) -> Response:
        try:
            params = parse_pairs(request.url.query)
            if request.method == "POST":
                params.update(await read_form(request))
        except EntraError as exc:
            return error_page(exc.code, exc.message)
        self.store.end_session(request.cookies.get(SESSION_COOKIE))
        target = params.get("post_logout_redirect_uri")
        resp: Response
        if target and self._logout_target_allowed(target, params):
            fields = {"state": params["state"]} if params.get("state") is not None else {}
            resp = RedirectResponse(_append(target, fields) if fields else target, status_code=302)
        else:
            note = (
                "The post_logout_redirect_uri is not registered for the application, so the "
                "browser stays here."
                if target
                else None
            )
            resp = signed_out_page(note)
        resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="none")
        return resp

    def _logout_target_allowed(self, target: str, params: dict[str, str]) -> bool:
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if not client_id and hint:
            try:
                claims: dict[str, Any] = jwt.decode(hint, options={"verify_signature": False})
                aud = claims.get("aud")
                client_id = aud if isinstance(aud, str) else None
            except jwt.PyJWTError:
                client_id = None
        apps = self.ctx.tenant.apps
        if client_id:
            app = self.ctx.tenant.app_by_client_id(client_id)
            apps = (app,) if app else ()
        return any(redirect_uri_registered(a.post_logout_redirect_uris, target) for a in apps)


def _check_code_challenge(params: dict[str, str]) -> None:
    """Accept a PKCE challenge only with S256 and of a valid length (absent is fine)."""
    challenge = params.get("code_challenge")
    if challenge is None:
        return
    method = params.get("code_challenge_method", "plain")
    if method != "S256":
        raise EntraError(
            "invalid_request",
            9002313,
            "Invalid request. The emulator requires code_challenge_method=S256.",
        )
    if not 43 <= len(challenge) <= 128:
        raise EntraError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
