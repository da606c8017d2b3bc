"""The token broker: OBO-derived DPS/ARM tokens, caching, workers, errors, and no leaks."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import jwt
import pytest
from django.contrib.sessions.models import Session

from audit.models import AuditEvent
from authn import crypto
from authn.exceptions import ReauthRequired, TokenUnavailable
from authn.models import UserTokenCache
from authn.msal_app import ARM_RESOURCE, DPS_RESOURCE
from authn.tokens import token_caches_load, token_for_user

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
DANA_OID = "d32e1251-5086-4c52-bbfe-3b563a87f904"


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def dana(entra_signin: Any) -> Any:
    from django.contrib.auth import get_user_model

    assert entra_signin(*DANA).status_code == 302
    return get_user_model().objects.get(entra_identity__object_id=DANA_OID)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dps_and_arm_tokens_are_obtained_on_behalf_of_the_user(dana: Any, settings: Any) -> None:
    """Downstream tokens carry the user's oid and the portal as client, and come from OBO."""
    for resource in (DPS_RESOURCE, ARM_RESOURCE):
        claims = _claims(token_for_user(dana, resource))
        assert claims["aud"].rstrip("/") == resource
        assert claims["oid"] == DANA_OID
        assert settings.ENTRA_CLIENT_ID in (claims.get("appid"), claims.get("azp"))
    caches = token_caches_load(dana)
    signin_targets = " ".join(
        e.get("target", "") for e in caches.signin.search(caches.signin.CredentialType.ACCESS_TOKEN)
    )
    obo_targets = " ".join(
        e.get("target", "") for e in caches.obo.search(caches.obo.CredentialType.ACCESS_TOKEN)
    )
    # The sign-in cache holds only the portal-API token; DPS/ARM tokens live in the OBO cache.
    assert f"api://{settings.ENTRA_CLIENT_ID}/" in signin_targets
    assert DPS_RESOURCE not in signin_targets
    assert ARM_RESOURCE not in signin_targets
    assert DPS_RESOURCE in obo_targets
    assert ARM_RESOURCE in obo_targets


def test_cached_token_needs_no_network(dana: Any, settings: Any) -> None:
    """A second request for the same resource is served from the encrypted cache."""
    first = token_for_user(dana, DPS_RESOURCE)
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    assert token_for_user(dana, DPS_RESOURCE) == first


def test_worker_gets_tokens_from_a_user_id(dana: Any) -> None:
    """Given only the user id (what a Celery task receives), the broker returns a token."""
    assert _claims(token_for_user(dana.pk, DPS_RESOURCE))["oid"] == DANA_OID


def test_entra_unreachable_is_token_unavailable(dana: Any, settings: Any) -> None:
    """With no cached token and Entra down, the broker raises TokenUnavailable, not ReauthRequired."""
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    with pytest.raises(TokenUnavailable):
        token_for_user(dana, ARM_RESOURCE)


def test_revoked_refresh_token_raises_reauth_required(
    dana: Any, entra_control: Any, entra_signin: Any
) -> None:
    """invalid_grant from Entra becomes ReauthRequired, for web and worker alike."""
    entra_control.lifetimes(access_token=60)
    entra_signin.client.logout()
    entra_signin(*DANA)
    entra_control.revoke(DANA[0])
    with pytest.raises(ReauthRequired) as excinfo:
        token_for_user(dana.pk, DPS_RESOURCE)
    assert excinfo.value.error == "invalid_grant"


def test_user_without_entra_identity_must_sign_in(django_user_model: Any) -> None:
    """A local account with no Entra identity has no tokens: ReauthRequired."""
    user = django_user_model.objects.create_user("local")
    with pytest.raises(ReauthRequired):
        token_for_user(user, DPS_RESOURCE)


def test_unknown_resource_is_refused(dana: Any) -> None:
    with pytest.raises(ValueError):
        token_for_user(dana, "https://graph.microsoft.com")


def test_cache_is_unreadable_without_the_key(dana: Any, settings: Any) -> None:
    """The cache is encrypted: another key opens nothing and the user must sign in again."""
    from cryptography.fernet import Fernet

    settings.TOKEN_CACHE_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ReauthRequired):
        token_for_user(dana, ARM_RESOURCE)


def test_tokens_never_reach_logs_audit_rows_sessions_or_pages(
    entra_signin: Any, dps_instances: Any, caplog: Any
) -> None:
    """Grep everything the portal writes for the token strings: none of them appears."""
    caplog.set_level(logging.DEBUG)
    assert entra_signin(*DANA).status_code == 302
    home = entra_signin.client.get("/").content.decode()
    user_id = int(entra_signin.client.session["_auth_user_id"])
    dps_token = token_for_user(user_id, DPS_RESOURCE)
    arm_token = token_for_user(user_id, ARM_RESOURCE)
    caches = token_caches_load(user_id)
    secrets = {dps_token, arm_token}
    for cache in (caches.signin, caches.obo):
        for kind in (
            cache.CredentialType.ACCESS_TOKEN,
            cache.CredentialType.REFRESH_TOKEN,
            cache.CredentialType.ID_TOKEN,
        ):
            secrets.update(e["secret"] for e in cache.search(kind))
    assert len(secrets) >= 5  # portal-API AT, DPS AT, ARM AT, refresh tokens, ID token
    entra_signin.client.post("/auth/logout/")

    audit_rows = json.dumps([list(r) for r in AuditEvent.objects.values_list()], default=str)
    sessions = " ".join(s.session_data + json.dumps(s.get_decoded()) for s in Session.objects.all())
    blobs = b"".join(bytes(r.blob) for r in UserTokenCache.objects.all())
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in audit_rows
        assert secret not in sessions
        assert secret not in home
        assert secret.encode() not in blobs
    assert "eyJ" not in caplog.text


def test_blob_is_encrypted_with_the_newest_key_and_old_keys_still_open_it(
    dana: Any, settings: Any
) -> None:
    """Key rotation: prepend a new key; existing caches open, the next write uses the new key."""
    from cryptography.fernet import Fernet

    old_key = settings.TOKEN_CACHE_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.TOKEN_CACHE_KEYS = [new_key, old_key]
    token_for_user(dana, ARM_RESOURCE)  # obtains a new token and rewrites the cache
    blob = bytes(UserTokenCache.objects.get(user=dana).blob)
    assert Fernet(new_key.encode()).decrypt(blob)
    assert crypto.decrypt(blob) is not None
