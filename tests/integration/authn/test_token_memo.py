"""The token broker's process memory: per user, per resource, per encrypted cache, never expired."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from authn import crypto, tokens
from authn.exceptions import ReauthRequired
from authn.models import UserTokenCache
from authn.msal_app import ARM_RESOURCE, DPS_RESOURCE
from authn.tokens import token_cache_delete, token_caches_load, token_caches_save, token_for_user

from .conftest import EntraSignin

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
REGGIE = ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!")


@pytest.fixture
def decrypts(monkeypatch: Any) -> list[int]:
    """Count the decryptions of token caches."""
    calls: list[int] = []
    real = crypto.decrypt

    def counting(ciphertext: bytes) -> str | None:
        calls.append(1)
        return real(ciphertext)

    monkeypatch.setattr(crypto, "decrypt", counting)
    return calls


def _user(entra_signin: Any, creds: tuple[str, str]) -> Any:
    """Sign ``creds`` in with a browser and a client of their own (no SSO from another user)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    signin = EntraSignin(Client(SERVER_NAME="localhost"), _browser(entra_signin.browser))
    assert signin(*creds).status_code == 302
    return get_user_model().objects.get(pk=signin.client.session["_auth_user_id"])


def _browser(like: requests.Session) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = like.verify
    return session


def test_second_call_is_served_without_decrypting(entra_signin: Any, decrypts: list[int]) -> None:
    dana = _user(entra_signin, DANA)
    first = token_for_user(dana, DPS_RESOURCE)
    before = len(decrypts)
    assert token_for_user(dana, DPS_RESOURCE) == first
    assert token_for_user(dana.pk, DPS_RESOURCE) == first  # a worker's user id too
    assert len(decrypts) == before


def test_tokens_are_never_shared_between_users_or_resources(entra_signin: Any) -> None:
    dana = _user(entra_signin, DANA)
    dana_dps = token_for_user(dana, DPS_RESOURCE)
    dana_arm = token_for_user(dana, ARM_RESOURCE)
    reggie = _user(entra_signin, REGGIE)
    reggie_dps = token_for_user(reggie, DPS_RESOURCE)
    assert len({dana_dps, dana_arm, reggie_dps}) == 3
    assert token_for_user(dana, DPS_RESOURCE) == dana_dps
    assert token_for_user(reggie, DPS_RESOURCE) == reggie_dps
    assert token_for_user(dana, ARM_RESOURCE) == dana_arm


def test_a_cache_rewritten_elsewhere_is_read_again(entra_signin: Any, decrypts: list[int]) -> None:
    """Another process storing the cache (even unchanged) gives a new version: decrypt again."""
    dana = _user(entra_signin, DANA)
    first = token_for_user(dana, DPS_RESOURCE)
    token_caches_save(dana, token_caches_load(dana))  # new ciphertext, same tokens
    before = len(decrypts)
    assert token_for_user(dana, DPS_RESOURCE) == first
    assert len(decrypts) == before + 1


def test_a_token_another_process_stored_is_the_one_returned(entra_signin: Any) -> None:
    """When another process refreshed the DPS token, the new one is used, not the remembered one."""
    dana = _user(entra_signin, DANA)
    old = token_for_user(dana, DPS_RESOURCE)
    caches = token_caches_load(dana)
    access = caches.obo.CredentialType.ACCESS_TOKEN
    for entry in caches.obo.search(access):
        if DPS_RESOURCE in entry.get("target", ""):
            caches.obo.modify(access, entry, {"secret": "refreshed-elsewhere"})
    token_caches_save(dana, caches)
    assert old != "refreshed-elsewhere"
    assert token_for_user(dana, DPS_RESOURCE) == "refreshed-elsewhere"


def test_a_remembered_token_is_not_used_within_five_minutes_of_expiry(
    entra_signin: Any, monkeypatch: Any, decrypts: list[int]
) -> None:
    dana = _user(entra_signin, DANA)
    token_for_user(dana, DPS_RESOURCE)
    version, _, expires_on = tokens._memo[(dana.pk, DPS_RESOURCE)]
    assert expires_on - time.time() > 300
    assert tokens._memo_get(dana.pk, DPS_RESOURCE, version) is not None
    later = expires_on - 299
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    before = len(decrypts)
    assert tokens._memo_get(dana.pk, DPS_RESOURCE, version) is None
    token_for_user(dana, DPS_RESOURCE)  # the broker's own path: decrypt, then Entra
    assert len(decrypts) == before + 1


def test_signed_out_user_gets_no_remembered_token(entra_signin: Any) -> None:
    dana = _user(entra_signin, DANA)
    token_for_user(dana, DPS_RESOURCE)
    token_cache_delete(dana)
    with pytest.raises(ReauthRequired):
        token_for_user(dana, DPS_RESOURCE)


def test_a_deleted_cache_row_elsewhere_is_noticed(entra_signin: Any) -> None:
    """Another process deleting the cache (sign-out there) ends the remembered token here."""
    dana = _user(entra_signin, DANA)
    token_for_user(dana, DPS_RESOURCE)
    UserTokenCache.objects.filter(user=dana).delete()  # not through this process's broker
    assert (dana.pk, DPS_RESOURCE) in tokens._memo
    with pytest.raises(ReauthRequired):
        token_for_user(dana, DPS_RESOURCE)


def test_rotated_keys_miss(entra_signin: Any, settings: Any) -> None:
    """A remembered token belongs to a blob under given keys: without them it is not served."""
    from cryptography.fernet import Fernet

    dana = _user(entra_signin, DANA)
    token_for_user(dana, DPS_RESOURCE)
    settings.TOKEN_CACHE_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ReauthRequired):
        token_for_user(dana, DPS_RESOURCE)


def test_memory_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(tokens, "_MEMO_MAX_ENTRIES", 3)
    far = int(time.time()) + 3600
    for uid in range(10):
        tokens._memo_put(uid, DPS_RESOURCE, b"v", f"t{uid}", far)
    assert len(tokens._memo) <= 3
    assert tokens._memo_get(9, DPS_RESOURCE, b"v") == "t9"
    assert tokens._memo_get(0, DPS_RESOURCE, b"v") is None
