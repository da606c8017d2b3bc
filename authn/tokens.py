"""The token broker: the one place that holds and derives a user's tokens.

Two MSAL caches per user, stored together and encrypted in :class:`UserTokenCache`:

* ``signin``: what the authorization-code flow returned: the portal-API access token
  (``aud`` = the portal itself), the ID token and the sign-in refresh token.
* ``obo``: tokens for DPS and ARM, each derived from the portal-API token with the
  on-behalf-of grant, plus the refresh token that grant returns.

Keeping them apart is what makes every downstream token an OBO token (DESIGN.md §4): with a
single cache MSAL would mint DPS tokens straight from the sign-in refresh token. Workers
call :func:`token_for_user` with a user id and get the same silent → OBO path.

Tokens are returned to the caller and go nowhere else: no log line, exception message,
audit row or task argument contains one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from authn import crypto
from authn.exceptions import ReauthRequired, TokenUnavailable
from authn.models import EntraIdentity, UserTokenCache
from authn.msal_app import (
    ARM_RESOURCE,
    DPS_RESOURCE,
    MsalServiceError,
    SerializableTokenCache,
    api_scope,
    build_app,
    new_token_cache,
    resource_scope,
)

log = logging.getLogger(__name__)

RESOURCES = (DPS_RESOURCE, ARM_RESOURCE)
# Entra errors that only a new interactive sign-in can fix (reference/identity §5.4).
REAUTH_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "login_required", "consent_required"}
)
_MIN_LIFETIME_SECONDS = 300  # MSAL's own margin: never hand out a token about to expire

AppFactory = Callable[[SerializableTokenCache], Any]


@dataclass
class UserCaches:
    signin: SerializableTokenCache
    obo: SerializableTokenCache

    @property
    def changed(self) -> bool:
        return bool(self.signin.has_state_changed or self.obo.has_state_changed)


def _user_id(user: Any) -> int:
    return int(user if isinstance(user, int) else user.pk)


def token_caches_load(user: Any) -> UserCaches:
    """Load and decrypt the user's caches (empty when absent or unreadable with current keys)."""
    row = UserTokenCache.objects.filter(user_id=_user_id(user)).only("blob").first()
    plaintext = crypto.decrypt(row.blob) if row else None
    data: dict[str, Any] = {}
    if plaintext:
        try:
            data = json.loads(plaintext)
        except ValueError:
            data = {}
    return UserCaches(
        signin=new_token_cache(data.get("signin")), obo=new_token_cache(data.get("obo"))
    )


def token_caches_save(user: Any, caches: UserCaches) -> None:
    """Encrypt and store the caches (last writer wins: Entra keeps older refresh tokens valid)."""
    blob = crypto.encrypt(
        json.dumps({"v": 1, "signin": caches.signin.serialize(), "obo": caches.obo.serialize()})
    )
    UserTokenCache.objects.update_or_create(user_id=_user_id(user), defaults={"blob": blob})


def token_cache_store_signin(user: Any, signin_cache: SerializableTokenCache) -> None:
    """Replace the user's caches after a sign-in: new sign-in tokens, no derived tokens yet."""
    token_caches_save(user, UserCaches(signin=signin_cache, obo=new_token_cache()))


def token_cache_delete(user: Any) -> None:
    UserTokenCache.objects.filter(user_id=_user_id(user)).delete()


def _account(app: Any, home_account_id: str) -> dict[str, Any] | None:
    return next(
        (a for a in app.get_accounts() if a.get("home_account_id") == home_account_id), None
    )


def _cached_access_token(
    cache: SerializableTokenCache, home_account_id: str, client_id: str, resource: str
) -> str | None:
    """Find an unexpired access token for ``resource`` whatever scopes Entra named in it.

    Entra answers a ``.default`` request with the granted scope names (``…/user_impersonation``),
    so MSAL's own lookup by ``.default`` would miss and refresh on every call.
    """
    prefix = resource.rstrip("/").lower() + "/"
    now = time.time()
    for entry in cache.search(
        SerializableTokenCache.CredentialType.ACCESS_TOKEN,
        query={"home_account_id": home_account_id, "client_id": client_id},
    ):
        targets = (entry.get("target") or "").lower().split()
        if not targets or not all(t.startswith(prefix) for t in targets):
            continue
        if int(entry.get("expires_on", 0)) - now > _MIN_LIFETIME_SECONDS:
            return str(entry["secret"])
    return None


def _error_of(result: dict[str, Any] | None) -> str:
    return str((result or {}).get("error") or "")


def _raise_for(result: dict[str, Any] | None, what: str) -> None:
    error = _error_of(result)
    if error in REAUTH_ERRORS:
        raise ReauthRequired(
            error,
            suberror=str((result or {}).get("suberror") or ""),
            claims=str((result or {}).get("claims") or ""),
        )
    raise TokenUnavailable(
        f"Entra ID refused the {what} request ({error or 'no token'}).", error=error
    )


def token_for_user(user: Any, resource: str, *, app_factory: AppFactory = build_app) -> str:
    """Return an access token for ``resource`` (DPS or ARM) on behalf of ``user``.

    ``user`` is a user or a user id. Order: a cached token for the resource; a silent refresh
    with the OBO refresh token; otherwise the portal-API token (cached or refreshed with the
    sign-in refresh token) exchanged on behalf of the user. Raises :class:`ReauthRequired`
    when only a new sign-in can help and :class:`TokenUnavailable` when Entra cannot be used.
    """
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}")
    identity = EntraIdentity.objects.filter(user_id=_user_id(user)).first()
    if identity is None:
        raise ReauthRequired("no_account")
    home = identity.home_account_id
    caches = token_caches_load(user)
    scope = resource_scope(resource)
    try:
        # A cached token needs no app object, hence no discovery request.
        cached = _cached_access_token(caches.obo, home, str(settings.ENTRA_CLIENT_ID), resource)
        if cached:
            return cached
        obo_app = app_factory(caches.obo)
        token = _silent_from_obo_cache(obo_app, home, scope)
        if token is None:
            assertion = _portal_api_token(app_factory(caches.signin), home)
            result = obo_app.acquire_token_on_behalf_of(assertion, [scope])
            if not result or "access_token" not in result:
                _raise_for(result, "on-behalf-of")
            token = str(result["access_token"])
            log.info("obtained a %s token on behalf of user %s", resource, identity.pk)
        return token
    except (requests.RequestException, MsalServiceError, ValueError) as exc:
        # ValueError: MSAL could not read the authority's discovery document.
        raise TokenUnavailable(
            f"Microsoft Entra ID could not be reached ({type(exc).__name__})."
        ) from exc
    finally:
        if caches.changed:
            token_caches_save(user, caches)


def _silent_from_obo_cache(obo_app: Any, home: str, scope: str) -> str | None:
    account = _account(obo_app, home)
    if account is None:
        return None
    result = obo_app.acquire_token_silent_with_error([scope], account)
    if result and "access_token" in result:
        return str(result["access_token"])
    if result:
        # The OBO refresh token failed; a fresh exchange may still work.
        log.info("refresh with the on-behalf-of refresh token failed (%s)", _error_of(result))
    return None


def _portal_api_token(signin_app: Any, home: str) -> str:
    account = _account(signin_app, home)
    if account is None:
        raise ReauthRequired("no_account")
    result = signin_app.acquire_token_silent_with_error([api_scope()], account)
    if not result:
        raise ReauthRequired("no_refresh_token")
    if "access_token" not in result:
        _raise_for(result, "refresh")
    return str(result["access_token"])
