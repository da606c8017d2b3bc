"""Sign-in, sign-out and Entra users."""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from django.contrib.auth import authenticate, get_user_model, login, logout
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from audit.throttle import audit_signin_failure
from authn.capabilities import capabilities_invalidate_all
from authn.exceptions import SigninError, SigninUnavailable
from authn.models import EntraIdentity
from authn.msal_app import MsalServiceError, api_scope, authority, build_app, new_token_cache
from authn.oidc import id_token_verify
from authn.tokens import token_cache_delete, token_cache_store_signin

log = logging.getLogger(__name__)

FLOWS_SESSION_KEY = "authn.pending_flows"
MAX_PENDING_FLOWS = 5
FLOW_MAX_AGE_SECONDS = 15 * 60
BACKEND_PATH = "authn.backends.EntraBackend"


# -- redirects -----------------------------------------------------------------------------
def safe_next_url(request: HttpRequest, candidate: str | None) -> str:
    """Return ``candidate`` if it stays on this site (and is not an auth URL), else ``/``."""
    if not candidate or not url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return "/"
    if candidate.startswith(("/auth/login", "/auth/callback", "/auth/logout")):
        return "/"
    return candidate


def redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("authn:callback"))


# -- sign-in ---------------------------------------------------------------------------------
def signin_start(*, request: HttpRequest, next_url: str | None) -> str:
    """Begin the authorization-code flow with PKCE; return the URL to send the browser to.

    The flow (state, nonce, PKCE verifier) stays in the server-side session, keyed by
    ``state`` so that a few sign-ins in parallel tabs do not overwrite each other.
    """
    try:
        app = build_app()
        with warnings.catch_warnings():
            # MSAL recommends form_post; query is deliberate (SameSite=Lax, reference §5.3).
            warnings.simplefilter("ignore", UserWarning)
            flow = app.initiate_auth_code_flow(
                [api_scope()], redirect_uri=redirect_uri(request), response_mode="query"
            )
    except (requests.RequestException, MsalServiceError, ValueError) as exc:
        _audit_failure("unavailable", f"authority unreachable ({type(exc).__name__})")
        raise SigninUnavailable(
            "Microsoft Entra ID cannot be reached at the moment. Try again in a few minutes."
        ) from exc
    pending: dict[str, Any] = dict(request.session.get(FLOWS_SESSION_KEY) or {})
    pending[flow["state"]] = {
        "flow": flow,
        "next": safe_next_url(request, next_url),
        "created": time.time(),
    }
    newest = sorted(pending.items(), key=lambda kv: kv[1]["created"])[-MAX_PENDING_FLOWS:]
    request.session[FLOWS_SESSION_KEY] = dict(newest)
    return str(flow["auth_uri"])


@dataclass(frozen=True)
class SigninResult:
    user: Any
    next_url: str


def _pop_flow(request: HttpRequest, state: str | None) -> dict[str, Any] | None:
    pending: dict[str, Any] = dict(request.session.get(FLOWS_SESSION_KEY) or {})
    entry = pending.pop(state, None) if state else None
    request.session[FLOWS_SESSION_KEY] = pending
    return entry


def _audit_failure(code: str, message: str, claims: dict[str, Any] | None = None) -> None:
    claims = claims or {}
    # Per-address limit: a flood of failures is counted, not chained row by row (audit.throttle).
    audit_signin_failure(
        message=f"{code}: {message}",
        actor_oid=str(claims.get("oid") or ""),
        actor_upn=str(claims.get("preferred_username") or claims.get("upn") or ""),
        actor_name=str(claims.get("name") or ""),
    )


def signin_complete(*, request: HttpRequest) -> SigninResult:
    """Finish the sign-in from the query Entra redirected back with; log the user in.

    Raises :class:`SigninError` (audited as ``signin_failed``) on any problem: unknown or
    reused ``state``, an error from Entra, a refused code, an ID token that fails
    validation, a disabled account.
    """
    params = {k: str(v) for k, v in request.GET.items()}
    entry = _pop_flow(request, params.get("state"))
    try:
        if entry is None:
            raise SigninError(
                "This sign-in response does not belong to a sign-in started here: it was "
                "already used, or it was started in another browser.",
                code="unknown_state",
            )
        if time.time() - float(entry["created"]) > FLOW_MAX_AGE_SECONDS:
            raise SigninError("The sign-in took too long. Please start again.", code="expired")
        if "error" in params:
            log.info("Entra ID refused the sign-in: %s", params.get("error_description", "")[:300])
            raise SigninError(
                "Microsoft Entra ID did not sign you in.", code=str(params["error"])[:64]
            )
        user = _redeem(request, entry["flow"], params)
    except SigninError as exc:
        _audit_failure(exc.code or "error", str(exc), getattr(exc, "claims", None))
        raise
    return SigninResult(user=user, next_url=entry["next"])


def _redeem(request: HttpRequest, flow: dict[str, Any], params: dict[str, str]) -> Any:
    cache = new_token_cache()
    try:
        app = build_app(cache)
        result = app.acquire_token_by_auth_code_flow(flow, params)
    except (requests.RequestException, MsalServiceError) as exc:
        raise SigninUnavailable(
            "Microsoft Entra ID cannot be reached at the moment. Try again in a few minutes.",
            code="unavailable",
        ) from exc
    except ValueError as exc:  # state mismatch, missing code, unreadable discovery document
        raise SigninError("The sign-in response was not valid.", code="bad_response") from exc
    except RuntimeError as exc:  # MSAL's nonce check
        raise SigninError("The sign-in response was replayed.", code="bad_nonce") from exc
    if "error" in result:
        raise SigninError(
            "Microsoft Entra ID refused to complete the sign-in.", code=str(result["error"])[:64]
        )
    id_token = result.get("id_token")
    if not id_token or "access_token" not in result:
        raise SigninError("Microsoft Entra ID returned no ID token.", code="no_id_token")
    claims = id_token_verify(
        str(id_token), nonce=hashlib.sha256(str(flow["nonce"]).encode()).hexdigest()
    )
    user = authenticate(request, entra_claims=claims)
    if user is None:
        error = SigninError("Your portal account is disabled.", code="account_disabled")
        error.claims = claims  # type: ignore[attr-defined]
        raise error
    # Store the new tokens before login(): its user_logged_in signal resumes the user's
    # bulk jobs paused for sign-in, and that check must see these tokens, not the dead ones.
    token_cache_store_signin(user, cache)
    capabilities_invalidate_all(user)
    login(request, user, backend=BACKEND_PATH)
    audit_record(actor=user, action=AuditAction.SIGNIN, outcome=AuditOutcome.SUCCESS)
    return user


def user_get_or_create_from_claims(claims: dict[str, Any]) -> Any:
    """Return the Django user of an Entra identity (tid + oid), creating it on first sign-in.

    Display name, UPN, names, email and app roles are refreshed from the claims every time.
    Returns the user even if inactive; the caller decides.
    """
    tid, oid = str(claims["tid"]), str(claims["oid"])
    upn = str(claims.get("preferred_username") or claims.get("upn") or "")
    roles = sorted({r for r in claims.get("roles") or [] if isinstance(r, str)})
    User = get_user_model()
    for _ in range(2):
        try:
            with transaction.atomic():
                identity = (
                    EntraIdentity.objects.select_for_update()
                    .select_related("user")
                    .filter(tenant_id=tid, object_id=oid)
                    .first()
                )
                if identity is None:
                    user = User.objects.create_user(username=f"{oid}.{tid}"[:150], password=None)
                    identity = EntraIdentity(user=user, tenant_id=tid, object_id=oid)
                user = identity.user
                user.first_name = str(claims.get("given_name") or "")[:150]
                user.last_name = str(claims.get("family_name") or "")[:150]
                user.email = str(claims.get("email") or (upn if "@" in upn else ""))[:254]
                user.save(update_fields=["first_name", "last_name", "email"])
                identity.upn = upn[:255]
                identity.display_name = str(claims.get("name") or upn)[:255]
                identity.app_roles = roles
                identity.last_signin = timezone.now()
                identity.save()
                user.entra_identity = identity
                return user
        except IntegrityError:
            # Two first sign-ins of the same person at once: the other one created the row.
            continue
    raise SigninError("Your account could not be set up. Please try again.", code="race")


# -- sign-out ----------------------------------------------------------------------------------
def signout(*, request: HttpRequest) -> str:
    """Sign the user out of the portal and return Entra's logout URL to redirect through."""
    user = request.user
    if user.is_authenticated:
        audit_record(actor=user, action=AuditAction.SIGNOUT, outcome=AuditOutcome.SUCCESS)
        token_cache_delete(user)
        capabilities_invalidate_all(user)
    logout(request)  # flushes the session
    query = urlencode({"post_logout_redirect_uri": request.build_absolute_uri("/")})
    return f"{authority()}/oauth2/v2.0/logout?{query}"
