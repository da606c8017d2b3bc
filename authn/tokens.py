"""The token broker: the one place that holds and derives a user's tokens.

Two MSAL caches per user, stored together and encrypted in :class:`UserTokenCache`:

* ``signin``: what the authorization-code flow returned: the portal-API access token
  (``aud`` = the portal itself), the ID token and the sign-in refresh token.
* ``obo``: tokens for DPS and ARM, each derived from the portal-API token with the
  on-behalf-of grant, plus the refresh token that grant returns.

Keeping them apart is what makes every downstream token an OBO token (docs/architecture.md,
"The decisions everything else follows"): with a single cache MSAL would mint DPS tokens
straight from the sign-in refresh token. Workers call :func:`token_for_user` with a user id
and get the same silent → OBO path.

Tokens are returned to the caller and go nowhere else: no log line, exception message,
audit row or task argument contains one.

Decrypting and deserialising the caches costs more than a DPS call, so a token once resolved
is remembered in process memory under (user id, resource) together with the version of the
encrypted blob it came from (:func:`authn.crypto.ciphertext_version`) and its expiry. A call
reads the blob (one small query) and uses the remembered token only while the blob is the
same one, under the same keys, and the token has more than five minutes left: a cache
rewritten by another process, a sign-out, a new sign-in or a key rotation all miss.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from msal import SerializableTokenCache

from authn import crypto
from authn.exceptions import ReauthRequired, TokenUnavailable
from authn.models import EntraIdentity, UserTokenCache
from authn.msal_app import (
    ARM_RESOURCE,
    DPS_RESOURCE,
    MsalServiceError,
    api_scope,
    build_app,
    new_token_cache,
    resource_scope,
)

log = logging.getLogger(__name__)

RESOURCES = (DPS_RESOURCE, ARM_RESOURCE)
# Entra errors that only a new interactive sign-in can fix: refresh token revoked or expired,
# MFA or consent now required.
REAUTH_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "login_required", "consent_required"}
)
# A refresh request carries nothing of the caller's but the refresh token, so Entra's
# invalid_request there (AADSTS9002313: unknown or malformed token) means the same as an
# expired one: only a new sign-in helps.
REFRESH_REAUTH_ERRORS = REAUTH_ERRORS | {"invalid_request"}
_MIN_LIFETIME_SECONDS = 300  # MSAL's own margin: never hand out a token about to expire
_MEMO_MAX_ENTRIES = 4096

AppFactory = Callable[[SerializableTokenCache], Any]


@dataclass
class UserCaches:
    """The two caches of a user and the version of the stored row they were read from.

    ``version`` is None when no row was stored: such caches are never written back (only a
    sign-in creates the row).
    """

    signin: SerializableTokenCache
    obo: SerializableTokenCache
    version: int | None = None

    @property
    def changed(self) -> bool:
        return bool(self.signin.has_state_changed or self.obo.has_state_changed)


def _user_id(user: Any) -> int:
    return int(user if isinstance(user, int) else user.pk)


def _row_of(user_id: int) -> tuple[bytes, int] | None:
    # Every page that calls DPS reads this row, and building the ORM query cost four times
    # running it (0.4 of 0.5 ms): the one statement is written out instead.
    connection = connections[router.db_for_read(UserTokenCache)]
    qn = connection.ops.quote_name
    table = qn(UserTokenCache._meta.db_table)
    # S608: only the model's own names are formatted in; the user id is a parameter.
    sql = f"SELECT {qn('blob')}, {qn('version')} FROM {table} WHERE {qn('user_id')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id])
        row = cursor.fetchone()
    return (bytes(row[0]), int(row[1])) if row is not None else None


def token_caches_load(user: Any) -> UserCaches:
    """Load and decrypt the user's caches (empty when absent or unreadable with current keys)."""
    return _caches_from_row(_row_of(_user_id(user)))


def _caches_from_row(row: tuple[bytes, int] | None) -> UserCaches:
    blob, version = row if row is not None else (None, None)
    plaintext = crypto.decrypt(blob) if blob else None
    data: dict[str, Any] = {}
    if plaintext:
        try:
            data = json.loads(plaintext)
        except ValueError:
            data = {}
    return UserCaches(
        signin=new_token_cache(data.get("signin")),
        obo=new_token_cache(data.get("obo")),
        version=version,
    )


def _encrypt(caches: UserCaches) -> bytes:
    return crypto.encrypt(
        json.dumps({"v": 1, "signin": caches.signin.serialize(), "obo": caches.obo.serialize()})
    )


def token_caches_save(user: Any, caches: UserCaches) -> bytes | None:
    """Store the caches over the row they were read from; return the new ciphertext.

    The UPDATE only matches while the row still has the version ``caches`` were read with, and
    never creates a row: after a sign-out (row deleted) or a newer sign-in or another process's
    write (version moved on) nothing is written and None is returned. Losing such a write is
    harmless: Entra keeps the older refresh tokens valid, and a token missing from the cache
    is simply derived again.
    """
    if caches.version is None:
        return None
    blob = _encrypt(caches)
    new_version = _new_version()
    updated = UserTokenCache.objects.filter(user_id=_user_id(user), version=caches.version).update(
        blob=blob, version=new_version, updated_at=timezone.now()
    )
    if not updated:
        log.info("token cache of user %s changed meanwhile; not written back", _user_id(user))
        return None
    caches.version = new_version
    return blob


def _new_version() -> int:
    # Random, not a counter: a row deleted at sign-out and created again at the next sign-in
    # must not come back with the version a late writer read from the old one.
    return secrets.randbits(62) + 1


def token_cache_store_signin(user: Any, signin_cache: SerializableTokenCache) -> None:
    """Replace the user's caches after a sign-in: new sign-in tokens, no derived tokens yet.

    The only place that creates a cache row. Any writer still holding an older version of
    the row finds its conditional update matches nothing.
    """
    token_memo_forget(user)
    blob = _encrypt(UserCaches(signin=signin_cache, obo=new_token_cache()))
    uid = _user_id(user)
    for _ in range(2):
        try:
            with transaction.atomic():
                if UserTokenCache.objects.filter(user_id=uid).update(
                    blob=blob, version=_new_version(), updated_at=timezone.now()
                ):
                    return
                UserTokenCache.objects.create(user_id=uid, blob=blob, version=_new_version())
                return
        except IntegrityError:
            continue  # a sign-in in another tab created the row this instant: update it
    raise IntegrityError(f"token cache of user {uid} could not be stored")


def token_cache_delete(user: Any) -> None:
    """Delete the user's caches (sign-out): a refresh still in flight then writes nothing."""
    token_memo_forget(user)
    UserTokenCache.objects.filter(user_id=_user_id(user)).delete()


def token_caches_purge(*, keep_user_ids: Iterable[int], written_before: datetime) -> int:
    """Delete the token caches of users not in ``keep_user_ids``; return how many went.

    Only caches last written before ``written_before`` go: a user who signed in while the
    caller was working out whom to keep has a fresh row and keeps it.
    """
    deleted, _ = (
        UserTokenCache.objects.exclude(user_id__in=set(keep_user_ids))
        .filter(updated_at__lt=written_before)
        .delete()
    )
    return int(deleted)


#
# Process memory of resolved tokens: (user id, resource) -> (blob version, token, expires_on)
#

_memo: dict[tuple[int, str], tuple[bytes, str, int]] = {}
_memo_lock = threading.Lock()


def _memo_get(user_id: int, resource: str, version: bytes) -> str | None:
    entry = _memo.get((user_id, resource))
    if entry is None or entry[0] != version:
        return None
    if entry[2] - time.time() <= _MIN_LIFETIME_SECONDS:
        return None
    return entry[1]


def _memo_put(user_id: int, resource: str, version: bytes, token: str, expires_on: int) -> None:
    with _memo_lock:
        if len(_memo) >= _MEMO_MAX_ENTRIES:
            now = time.time()
            for key in [k for k, v in _memo.items() if v[2] - now <= _MIN_LIFETIME_SECONDS]:
                del _memo[key]
            while len(_memo) >= _MEMO_MAX_ENTRIES:
                del _memo[next(iter(_memo))]  # the oldest insertion
        _memo[(user_id, resource)] = (version, token, expires_on)


def token_memo_forget(user: Any = None) -> None:
    """Forget the tokens this process remembers for ``user`` (every user when None)."""
    with _memo_lock:
        if user is None:
            _memo.clear()
            return
        uid = _user_id(user)
        for resource in RESOURCES:
            _memo.pop((uid, resource), None)


def _account(app: Any, home_account_id: str) -> dict[str, Any] | None:
    return next(
        (a for a in app.get_accounts() if a.get("home_account_id") == home_account_id), None
    )


def _cached_access_token(
    cache: SerializableTokenCache, home_account_id: str, client_id: str, resource: str
) -> tuple[str, int] | None:
    """Find an unexpired access token for ``resource`` whatever scopes Entra named in it.

    Return the token and its expiry (epoch seconds).

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
        expires_on = int(entry.get("expires_on", 0))
        if expires_on - now > _MIN_LIFETIME_SECONDS:
            return str(entry["secret"]), expires_on
    return None


def _error_of(result: dict[str, Any] | None) -> str:
    return str((result or {}).get("error") or "")


def _raise_for(
    result: dict[str, Any] | None, what: str, reauth_errors: frozenset[str] = REAUTH_ERRORS
) -> None:
    error = _error_of(result)
    if error in reauth_errors:
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

    ``user`` is a user or a user id. Order: the token this process remembers for the same
    encrypted cache; a cached token for the resource; a silent refresh with the OBO refresh
    token; otherwise the portal-API token (cached or refreshed with the sign-in refresh token)
    exchanged on behalf of the user. Raises :class:`ReauthRequired` when only a new sign-in
    can help and :class:`TokenUnavailable` when Entra cannot be used.
    """
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}")
    uid = _user_id(user)
    row = _row_of(uid)
    version = _row_version(row)
    if version is not None:
        remembered = _memo_get(uid, resource, version)
        if remembered is not None:
            return remembered
    home = _home_account_id(user)
    if home is None:
        raise ReauthRequired("no_account")
    caches = _caches_from_row(row)
    client_id = str(settings.ENTRA_CLIENT_ID)
    try:
        # A cached token needs no app object, hence no discovery request.
        cached = _cached_access_token(caches.obo, home, client_id, resource)
        if cached:
            token = cached[0]
        else:
            token = _token_from_entra(caches, home, resource, app_factory, uid)
            cached = _cached_access_token(caches.obo, home, client_id, resource)
    except (requests.RequestException, MsalServiceError, ValueError) as exc:
        # ValueError: MSAL could not read the authority's discovery document.
        raise TokenUnavailable(
            f"Microsoft Entra ID could not be reached ({type(exc).__name__})."
        ) from exc
    finally:
        if caches.changed:
            # Written back only over the row read above (see token_caches_save).
            saved = token_caches_save(user, caches)
            version = crypto.ciphertext_version(saved) if saved is not None else None
    if version is not None and cached is not None and cached[0] == token:
        _memo_put(uid, resource, version, token, cached[1])
    return token


def _row_version(row: tuple[bytes, int] | None) -> bytes | None:
    """Return the version of the encrypted caches in ``row`` (None: no row, or no caches)."""
    blob = row[0] if row is not None else None
    return crypto.ciphertext_version(blob) if blob else None


def _token_from_entra(
    caches: UserCaches, home: str, resource: str, app_factory: AppFactory, uid: int
) -> str:
    """Ask Entra: refresh with the OBO refresh token, else exchange the portal-API token."""
    scope = resource_scope(resource)
    obo_app = app_factory(caches.obo)
    token = _silent_from_obo_cache(obo_app, home, scope)
    if token is not None:
        return token
    assertion = _portal_api_token(app_factory(caches.signin), home)
    result = obo_app.acquire_token_on_behalf_of(assertion, [scope])
    if not result or "access_token" not in result:
        _raise_for(result, "on-behalf-of")
    log.info("obtained a %s token on behalf of user %s", resource, uid)
    return str(result["access_token"])


def _home_account_id(user: Any) -> str | None:
    # A request's user comes with its identity (EntraBackend.get_user uses select_related).
    descriptor = getattr(type(user), "entra_identity", None)
    if descriptor is not None and descriptor.is_cached(user):
        try:
            return str(user.entra_identity.home_account_id)
        except ObjectDoesNotExist:
            return None
    identity = EntraIdentity.objects.filter(user_id=_user_id(user)).first()
    return identity.home_account_id if identity is not None else None


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
        _raise_for(result, "refresh", REFRESH_REAUTH_ERRORS)
    return str(result["access_token"])
