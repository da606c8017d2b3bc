"""The token endpoint's grants: authorization code, refresh token, on-behalf-of, client credentials.

Refresh tokens rotate: every refresh returns a new one, and, as in Entra, the old one stays
valid until it expires or is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from emulators.common.context import EmulatorContext
from emulators.common.keys import InvalidToken
from emulators.common.tenant import User
from emulators.entra.clientauth import ClientAuth, authenticate_client
from emulators.entra.errors import EntraError, invalid_grant, malformed, missing_parameter
from emulators.entra.scopes import ResourceCatalog, ScopeRequest
from emulators.entra.store import AuthCode, EntraStore
from emulators.entra.tokens import TokenMinter, client_info

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANTS = ("authorization_code", "refresh_token", "client_credentials", OBO_GRANT)
# Grants only a confidential client (one with a secret or certificate) may use.
CONFIDENTIAL_GRANTS = frozenset({"client_credentials", OBO_GRANT})

Grant = Callable[[dict[str, str], ClientAuth], dict[str, Any]]


def pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    form: dict[str, str]
    authorization: str
    token_endpoints: set[str]


class TokenService:
    """Answer token requests for one tenant."""

    def __init__(
        self, ctx: EmulatorContext, store: EntraStore, catalog: ResourceCatalog, minter: TokenMinter
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.catalog = catalog
        self.minter = minter
        self._grants: dict[str, Grant] = {
            "authorization_code": self._authorization_code,
            "refresh_token": self._refresh_token,
            "client_credentials": self._client_credentials,
            OBO_GRANT: self._on_behalf_of,
        }

    def handle(self, req: TokenRequest) -> dict[str, Any]:
        """Authenticate the client and answer the grant the form names."""
        form = req.form
        if "resource" in form:
            raise EntraError(
                "invalid_request",
                901002,
                "The 'resource' request parameter is not supported.",
            )
        grant = form.get("grant_type")
        if not grant:
            raise missing_parameter("grant_type")
        handler = self._grants.get(grant)
        if handler is None:
            raise EntraError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant[:80]}'.",
            )
        client = authenticate_client(
            self.ctx.tenant,
            form,
            req.authorization,
            req.token_endpoints,
            confidential_required=grant in CONFIDENTIAL_GRANTS,
        )
        return handler(form, client)

    # -- helpers -----------------------------------------------------------------
    def _scope(self, form: dict[str, str], fallback: str | None = None) -> ScopeRequest:
        scope = form.get("scope") or fallback
        if not scope:
            raise missing_parameter("scope")
        return self.catalog.parse(scope)[0]

    def _active_user(self, oid: str) -> User:
        user = self.ctx.tenant.user_by_oid(oid)
        if user is None:
            raise invalid_grant(50034, "The user account does not exist in the directory.")
        if not user.enabled:
            raise invalid_grant(
                50057,
                "The user account is disabled. The user object in Active Directory backing "
                "this account has been disabled.",
            )
        return user

    def _user_tokens(
        self,
        form: dict[str, str],
        client: ClientAuth,
        *,
        oid: str,
        session_id: str,
        auth_time: float,
        scope_fallback: str | None = None,
        nonce: str | None = None,
        include_auth_time: bool = False,
    ) -> dict[str, Any]:
        """Answer a user grant: the user must exist and be enabled, the scope name a resource."""
        user = self._active_user(oid)
        return self._user_response(
            form=form,
            client=client,
            user=user,
            req=self._scope(form, scope_fallback),
            session_id=session_id,
            auth_time=auth_time,
            nonce=nonce,
            include_auth_time=include_auth_time,
        )

    def _user_response(
        self,
        *,
        form: dict[str, str],
        client: ClientAuth,
        user: User,
        req: ScopeRequest,
        session_id: str,
        auth_time: float,
        nonce: str | None = None,
        include_auth_time: bool = False,
    ) -> dict[str, Any]:
        granted = self.catalog.granted(client.app, req)
        body: dict[str, Any] = {"token_type": "Bearer"}
        if req.resource is not None:
            resource, prefix, names = req.resource, req.prefix, granted
        else:
            # Only OIDC scopes: Entra issues a Microsoft Graph token for User.Read.
            resource, prefix, names = self.catalog.graph, self.catalog.graph.key, ["User.Read"]
        token, lifetime = self.minter.access_token(
            resource=resource,
            prefix=prefix,
            client=client.app,
            client_acr=client.acr,
            user=user,
            scopes=names,
            auth_time=auth_time,
        )
        # Entra names each granted scope as <resource as requested>/<name>, even when the
        # resource URI ends with a slash (https://management.core.windows.net//user_impersonation).
        body["scope"] = " ".join(
            n if resource is self.catalog.graph else f"{prefix}/{n}" for n in names
        )
        body.update(expires_in=lifetime, ext_expires_in=lifetime, access_token=token)
        if req.wants_refresh_token:
            body["refresh_token"] = self.store.new_refresh_token(
                client_id=client.app.client_id,
                user_oid=user.object_id,
                session_id=session_id,
                auth_time=auth_time,
            )
        if req.wants_id_token:
            body["id_token"] = self.minter.id_token(
                client=client.app,
                user=user,
                nonce=nonce,
                session_id=session_id,
                auth_time=auth_time,
                include_auth_time=include_auth_time,
            )
        if form.get("client_info") == "1":
            body["client_info"] = client_info(user, self.ctx.tenant.tenant_id)
        return body

    # -- grants -------------------------------------------------------------------
    def _authorization_code(self, form: dict[str, str], client: ClientAuth) -> dict[str, Any]:
        rec = self._redeem_code(form, client)
        self._check_redirect_uri(form, rec)
        self._check_code_verifier(form, rec)
        return self._user_tokens(
            form,
            client,
            oid=rec.user_oid,
            scope_fallback=rec.scope,
            session_id=rec.session_id,
            auth_time=rec.auth_time,
            nonce=rec.nonce,
            include_auth_time=rec.max_age_requested,
        )

    def _redeem_code(self, form: dict[str, str], client: ClientAuth) -> AuthCode:
        """Take the form's authorization code: unused, unexpired and issued to ``client``."""
        code = form.get("code")
        if not code:
            raise missing_parameter("code")
        rec, reused = self.store.take_code(code)
        if rec is None:
            raise malformed("The provided authorization code is invalid or malformed.")
        if reused:
            raise invalid_grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        if time.time() >= rec.expires_at:
            raise invalid_grant(
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if rec.client_id != client.app.client_id:
            raise invalid_grant(70000, "The authorization code was issued to a different client.")
        return rec

    @staticmethod
    def _check_redirect_uri(form: dict[str, str], rec: AuthCode) -> None:
        redirect_uri = form.get("redirect_uri")
        if not redirect_uri:
            raise EntraError(
                "invalid_request",
                700009,
                "Reply address must be provided when presenting an authorization code.",
            )
        if redirect_uri != rec.redirect_uri:
            raise invalid_grant(
                50011,
                f"The redirect URI '{redirect_uri[:200]}' specified in the request does not "
                "match the redirect URI used to obtain the authorization code.",
            )

    @staticmethod
    def _check_code_verifier(form: dict[str, str], rec: AuthCode) -> None:
        """Check PKCE when the authorization request sent a code challenge."""
        if rec.code_challenge is None:
            return
        verifier = form.get("code_verifier")
        if not verifier:
            raise missing_parameter("code_verifier")
        if not hmac.compare_digest(pkce_s256(verifier).encode(), rec.code_challenge.encode()):
            raise invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )

    def _refresh_token(self, form: dict[str, str], client: ClientAuth) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise missing_parameter("refresh_token")
        rec = self.store.refresh_token(token)
        if rec is None:
            raise malformed("The provided refresh token is invalid or malformed.")
        if rec.client_id != client.app.client_id:
            raise invalid_grant(
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to a "
                "different client.",
            )
        if rec.revoked:
            raise invalid_grant(
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is "
                "needed. The user might have changed or reset their password.",
            )
        if time.time() >= rec.expires_at:
            raise invalid_grant(
                700082,
                "The refresh token has expired due to inactivity. The token was issued on an "
                "earlier date and was inactive for longer than allowed.",
            )
        return self._user_tokens(
            form, client, oid=rec.user_oid, session_id=rec.session_id, auth_time=rec.auth_time
        )

    def _client_credentials(self, form: dict[str, str], client: ClientAuth) -> dict[str, Any]:
        scope = form.get("scope")
        if not scope:
            raise missing_parameter("scope")
        items = scope.split()
        if len(items) != 1 or not items[0].endswith("/.default"):
            raise EntraError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope[:200]} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI).",
            )
        req = self.catalog.parse(items[0])[0]
        assert req.resource is not None  # a /.default scope always names a resource
        token, lifetime = self.minter.access_token(
            resource=req.resource,
            prefix=req.prefix,
            client=client.app,
            client_acr=client.acr,
            user=None,
            scopes=[],
        )
        # Entra v2 omits ``scope`` from client-credentials responses.
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def _on_behalf_of(self, form: dict[str, str], client: ClientAuth) -> dict[str, Any]:
        if form.get("requested_token_use") != "on_behalf_of":
            raise EntraError(
                "invalid_request",
                900144 if "requested_token_use" not in form else 90009,
                "The request body must contain the following parameter: "
                "'requested_token_use' with the value 'on_behalf_of'.",
            )
        assertion = form.get("assertion")
        if not assertion:
            raise missing_parameter("assertion")
        try:
            jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise invalid_grant(50027, "JWT token is invalid or is malformed.") from None
        app = client.app
        audiences = [app.client_id, f"api://{app.client_id}"]
        if app.identifier_uri:
            audiences.append(app.identifier_uri)
        try:
            claims = self.ctx.keys.verify(
                assertion,
                audiences=audiences,
                issuers=[self.ctx.v1_issuer, self.ctx.v2_issuer],
            )
        except InvalidToken as exc:
            if "expired" in exc.reason:
                raise invalid_grant(
                    500133,
                    "Assertion is not within its valid time range. Ensure that the access "
                    "token is not expired before using it for user assertion.",
                ) from None
            raise invalid_grant(
                50013,
                f"Assertion failed signature validation. [Reason - {exc.reason}.]",
            ) from None
        if claims.get("idtyp") == "app":
            raise invalid_grant(
                50013,
                "Assertion is not a user token: the on-behalf-of flow works for user "
                "principals only.",
            )
        if "scp" not in claims:
            raise invalid_grant(
                240002,
                "Input id_token cannot be used as 'urn:ietf:params:oauth:grant-type:jwt-bearer' "
                "grant. Pass an access token whose audience is this application.",
            )
        return self._user_tokens(
            form,
            client,
            oid=str(claims.get("oid", "")),
            session_id=f"obo:{claims.get('uti', '')}",
            auth_time=float(claims.get("auth_time") or claims.get("iat") or time.time()),
        )
