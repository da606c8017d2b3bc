"""Issue 11 (hardening) of the token broker: sign-out sticks, unknown refresh tokens, outages.

Every test runs against the Entra, ARM and DPS emulators; outages are a closed port.
"""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn import crypto, msal_app
from authn.exceptions import ReauthRequired
from authn.models import UserTokenCache
from authn.msal_app import DPS_RESOURCE, build_app
from authn.tokens import token_caches_load, token_for_user

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
DANA_OID = "d32e1251-5086-4c52-bbfe-3b563a87f904"
LAB = "dps-fleet-lab"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dana() -> Any:
    return get_user_model().objects.get(entra_identity__object_id=DANA_OID)


def _blob(user: Any) -> bytes | None:
    row = UserTokenCache.objects.filter(user=user).first()
    return bytes(row.blob) if row is not None else None


@pytest.fixture
def dana(entra_signin: Any) -> Any:
    assert entra_signin(*DANA).status_code == 302
    return _dana()


# -- sign-out sticks -------------------------------------------------------------------------------
def test_refresh_in_flight_does_not_write_the_cache_back_after_sign_out(
    dana: Any, entra_signin: Any
) -> None:
    """A token request that was talking to Entra when the user signed out stores nothing."""
    signed_out: list[int] = []

    def factory(cache: Any) -> Any:
        # The broker reaches for Entra (no DPS token cached yet): the user signs out meanwhile.
        if not signed_out:
            assert entra_signin.client.post("/auth/logout/").status_code == 302
            signed_out.append(1)
        return build_app(cache)

    token_for_user(dana, DPS_RESOURCE, app_factory=factory)
    assert signed_out
    assert not UserTokenCache.objects.filter(user=dana).exists()


def test_refresh_in_flight_does_not_overwrite_a_newer_sign_in(dana: Any, entra_signin: Any) -> None:
    """A late writer holding an older version of the cache leaves a newer sign-in's cache alone."""
    stored: list[bytes | None] = []

    def factory(cache: Any) -> Any:
        if not stored:
            assert entra_signin(*DANA).status_code == 302  # a sign-in in another tab
            stored.append(_blob(dana))
        return build_app(cache)

    token_for_user(dana, DPS_RESOURCE, app_factory=factory)
    assert stored
    assert stored[0] is not None
    assert _blob(dana) == stored[0]


def test_refresh_in_flight_does_not_overwrite_a_sign_in_after_a_sign_out(
    dana: Any, entra_signin: Any
) -> None:
    """Sign-out then sign-in while a refresh is in flight: the new row is not the one read."""
    stored: list[bytes | None] = []

    def factory(cache: Any) -> Any:
        if not stored:
            assert entra_signin.client.post("/auth/logout/").status_code == 302
            assert entra_signin(*DANA).status_code == 302
            stored.append(_blob(dana))
        return build_app(cache)

    token_for_user(dana, DPS_RESOURCE, app_factory=factory)
    assert stored
    assert stored[0] is not None
    assert _blob(dana) == stored[0]


def test_purge_deletes_token_caches_without_a_live_session(dana: Any, settings: Any) -> None:
    """The beat task deletes the caches of users whose every session expired, and no other."""
    from authn.tasks import token_caches_purge_task

    User = get_user_model()
    expired = User.objects.create_user("expired")
    never = User.objects.create_user("never")
    blob = crypto.encrypt(json.dumps({"v": 1}))
    for user in (expired, never):
        UserTokenCache.objects.create(user=user, blob=blob)
    old = SessionStore()
    old["_auth_user_id"] = str(expired.pk)
    old.create()
    type(old).get_model_class().objects.filter(session_key=old.session_key).update(
        expire_date=timezone.now() - timedelta(minutes=1)
    )

    assert token_caches_purge_task() == 2
    assert set(UserTokenCache.objects.values_list("user_id", flat=True)) == {dana.pk}
    assert "authn.token_caches_purge" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }


# -- unknown or malformed refresh token ------------------------------------------------------------
def _replace_refresh_tokens(user: Any) -> None:
    """Make every refresh token in the user's caches one Entra never issued."""
    caches = token_caches_load(user)
    for c in (caches.signin, caches.obo):
        for entry in list(c.search(c.CredentialType.REFRESH_TOKEN)):
            c.modify(c.CredentialType.REFRESH_TOKEN, entry, {"secret": "0.AUnknownRefreshToken"})
    UserTokenCache.objects.filter(user=user).update(
        blob=crypto.encrypt(
            json.dumps({"v": 1, "signin": caches.signin.serialize(), "obo": caches.obo.serialize()})
        )
    )


def test_unknown_refresh_token_sends_the_user_to_sign_in(
    entra_signin: Any, entra_control: Any, dps_instances: Any
) -> None:
    """AADSTS9002313 (invalid_request) on a refresh is handled like an expired refresh token."""
    entra_control.lifetimes(access_token=60)  # every use needs the refresh token
    assert entra_signin(*DANA).status_code == 302
    dana = _dana()
    _replace_refresh_tokens(dana)
    with pytest.raises(ReauthRequired) as excinfo:
        token_for_user(dana.pk, DPS_RESOURCE)
    assert excinfo.value.error == "invalid_request"
    cache.clear()
    page = entra_signin.client.get(f"/?instance={LAB}")
    assert page.status_code == 401
    assert b'data-testid="reauth-signin"' in page.content


# -- Entra ID (the token service) unreachable in a view --------------------------------------------
def test_token_service_unreachable_in_a_view_is_a_clear_page(
    dana: Any, dps_instances: Any, settings: Any
) -> None:
    """A DPS page whose token cannot be had says so (503), never a server error."""
    assert _fill_capability_cache(dana)
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    msal_app.reset_http_cache()
    from django.test import Client

    client = Client(SERVER_NAME="localhost")
    client.force_login(dana, backend="authn.backends.EntraBackend")
    response = client.get(f"/dps/{LAB}/enrollments/")
    assert response.status_code == 503
    body = response.content.decode()
    assert 'data-testid="token-unavailable"' in body
    assert "could not be reached" in body
    htmx = client.get(f"/dps/{LAB}/enrollments/", HTTP_HX_REQUEST="true")
    assert htmx.status_code == 503
    assert b"<html" not in htmx.content
    assert b'data-testid="token-unavailable"' in htmx.content


def _fill_capability_cache(user: Any) -> bool:
    """Fill the capability cache (ARM read with a real token) so only the DPS token is missing."""
    from authn.capabilities import capabilities_resolve
    from instances.models import DpsInstance

    return bool(capabilities_resolve(user, DpsInstance.objects.get(name=LAB)))


# -- ARM unreachable -------------------------------------------------------------------------------
def test_arm_unreachable_is_not_a_denial(dana: Any, dps_instances: Any, settings: Any) -> None:
    """ARM down: the page says ARM could not be reached, and no "denied" event is recorded."""
    settings.ARM_ENDPOINT = f"https://127.0.0.1:{_closed_port()}"
    cache.clear()
    from django.test import Client

    client = Client(SERVER_NAME="localhost")
    client.force_login(dana, backend="authn.backends.EntraBackend")
    denied_before = AuditEvent.objects.filter(outcome=AuditOutcome.DENIED).count()
    response = client.get(f"/dps/{LAB}/enrollments/")
    assert response.status_code == 503
    body = response.content.decode()
    assert 'data-testid="permissions-unavailable"' in body
    assert "Azure Resource Manager could not be reached" in body
    assert "does not allow" not in body
    assert AuditEvent.objects.filter(outcome=AuditOutcome.DENIED).count() == denied_before
    assert not AuditEvent.objects.filter(action=AuditAction.DENIED).exists()
    home = client.get("/").content.decode()
    assert 'data-testid="permissions-banner-unreachable"' in home
    assert "Azure Resource Manager could not be reached (no answer)." in home
