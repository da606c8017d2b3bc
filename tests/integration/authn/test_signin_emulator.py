"""Sign-in through the Entra ID emulator's own sign-in page, end to end over HTTP."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn.models import EntraIdentity

from .helpers import expected_capabilities, shown_capabilities

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
REGGIE = ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!")
ADA = ("ada.admin@contoso-iot.example", "Ada-Demo-2026!")


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _demo_users() -> list[tuple[str, str, str]]:
    from emulators.common.tenant import load_tenant

    return [(u.username, u.password, u.object_id) for u in load_tenant(None).users if u.enabled]


@pytest.mark.parametrize(("username", "password", "oid"), _demo_users(), ids=lambda v: str(v)[:12])
def test_each_demo_user_sees_exactly_the_tenants_capabilities(
    entra_signin: Any, dps_instances: Any, username: str, password: str, oid: str
) -> None:
    """Every demo user sees, per instance, the capabilities the tenant's RBAC grants, no more."""
    response = entra_signin(username, password)
    assert response.status_code == 302, response.content[:1000]
    home = entra_signin.client.get("/")
    assert home.status_code == 200
    html = home.content.decode()
    shown, expected = shown_capabilities(html), expected_capabilities(oid)
    assert shown == expected
    assert 'data-testid="permissions-banner"' not in html
    identity = EntraIdentity.objects.get(object_id=oid)
    assert identity.upn == username


def test_signin_records_identity_roles_and_audit(entra_signin: Any, dps_instances: Any) -> None:
    """App roles come from the token; the navbar names the user and the role; sign-in is audited."""
    assert entra_signin(*ADA).status_code == 302
    identity = EntraIdentity.objects.get(upn=ADA[0])
    assert identity.app_roles == ["Portal.Admin"]
    assert identity.display_name == "Ada Admin"
    home = entra_signin.client.get("/").content.decode()
    assert 'data-testid="user-name">Ada Admin<' in home
    assert 'data-testid="app-role">Portal.Admin<' in home
    event = AuditEvent.objects.get(action=AuditAction.SIGNIN)
    assert (event.actor_oid, event.actor_upn, event.outcome) == (
        identity.object_id,
        ADA[0],
        AuditOutcome.SUCCESS,
    )


def test_second_signin_refreshes_the_same_user(entra_signin: Any, dps_instances: Any) -> None:
    """Signing in twice maps to one Django user keyed on tenant + object id."""
    entra_signin(*REGGIE)
    first = EntraIdentity.objects.get(upn=REGGIE[0])
    EntraIdentity.objects.filter(pk=first.pk).update(display_name="stale", app_roles=["X"])
    entra_signin.client.logout()
    entra_signin(*REGGIE)
    again = EntraIdentity.objects.get(upn=REGGIE[0])
    assert (again.pk, again.user_id) == (first.pk, first.user_id)
    assert (again.display_name, again.app_roles) == ("Reggie Reader", [])


def test_session_key_rotates_at_signin(entra_signin: Any) -> None:
    """auth.login() gives the signed-in user a new session key (no session fixation)."""
    auth_uri = entra_signin.start()
    before = entra_signin.client.session.session_key
    emu = entra_signin.submit_credentials(auth_uri, *DANA)
    entra_signin.client.get(entra_signin.callback_path(emu))
    assert _signed_in(entra_signin.client)
    assert entra_signin.client.session.session_key != before


# -- failure paths ------------------------------------------------------------------------
def test_wrong_password_gives_no_session(entra_signin: Any) -> None:
    """A wrong password stays on Entra's page; the portal never gets a code or a session.

    When the user then gives up, Entra redirects back with error=access_denied, which the
    portal shows and audits as signin_failed.
    """
    auth_uri = entra_signin.start()
    emu = entra_signin.submit_credentials(auth_uri, DANA[0], "not-the-password")
    assert emu.status_code == 200
    assert "AADSTS50126" in emu.text
    assert not _signed_in(entra_signin.client)
    assert not entra_signin.client.get("/").wsgi_request.user.is_authenticated
    state = parse_qs(urlsplit(auth_uri).query)["state"][0]
    query = urlencode(
        {"error": "access_denied", "error_description": "AADSTS50126: gave up", "state": state}
    )
    response = entra_signin.client.get(f"/auth/callback?{query}")
    assert response.status_code == 400
    assert b"did not sign you in" in response.content
    assert not _signed_in(entra_signin.client)
    failed = AuditEvent.objects.get(action=AuditAction.SIGNIN_FAILED)
    assert failed.outcome == AuditOutcome.FAILED
    assert failed.message.startswith("access_denied")
    assert not AuditEvent.objects.filter(action=AuditAction.SIGNIN).exists()


def test_tampered_state_is_refused(entra_signin: Any) -> None:
    """A callback whose state was altered is refused and audited; the genuine one still works."""
    auth_uri = entra_signin.start()
    callback = entra_signin.callback_path(entra_signin.submit_credentials(auth_uri, *DANA))
    parts = parse_qs(urlsplit(callback).query)
    tampered = urlencode({"code": parts["code"][0], "state": parts["state"][0] + "x"})
    response = entra_signin.client.get(f"/auth/callback?{tampered}")
    assert response.status_code == 400
    assert b"Traceback" not in response.content
    assert not _signed_in(entra_signin.client)
    assert AuditEvent.objects.filter(
        action=AuditAction.SIGNIN_FAILED, message__startswith="unknown_state"
    ).exists()
    assert entra_signin.client.get(callback).status_code == 302
    assert _signed_in(entra_signin.client)


def test_replayed_callback_is_refused(entra_signin: Any) -> None:
    """A callback URL works once: replayed in the same or another browser, it is refused."""
    auth_uri = entra_signin.start()
    callback = entra_signin.callback_path(entra_signin.submit_credentials(auth_uri, *DANA))
    assert entra_signin.client.get(callback).status_code == 302
    assert entra_signin.client.get(callback).status_code == 400
    attacker = Client(SERVER_NAME="localhost")
    response = attacker.get(callback)
    assert response.status_code == 400
    assert not _signed_in(attacker)
    assert AuditEvent.objects.filter(action=AuditAction.SIGNIN_FAILED).count() == 2


def test_foreign_state_from_another_browser_is_refused(entra_signin: Any) -> None:
    """A code+state obtained in one browser cannot sign in another one (login CSRF)."""
    auth_uri = entra_signin.start()
    callback = entra_signin.callback_path(entra_signin.submit_credentials(auth_uri, *DANA))
    victim = Client(SERVER_NAME="localhost")
    victim.get("/auth/login/")  # the victim has a pending sign-in of its own
    assert victim.get(callback).status_code == 400
    assert not _signed_in(victim)


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/x", "https:evil.example", "/auth/callback?x=1"],
)
def test_unsafe_next_is_replaced_by_home(entra_signin: Any, next_url: str) -> None:
    """An off-site or auth-loop ``next`` is refused: the user lands on the home page."""
    response = entra_signin(*DANA, next_url=next_url)
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_safe_next_is_kept(entra_signin: Any) -> None:
    """A local ``next`` (path and query) is where the user lands after signing in."""
    response = entra_signin(*DANA, next_url="/?instance=dps-fleet-lab")
    assert response["Location"] == "/?instance=dps-fleet-lab"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_emulator_down_at_signin_start(entra_signin: Any, settings: Any) -> None:
    """Entra unreachable: a clear 503 page, no stack trace, audited as signin_failed."""
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    response = entra_signin.client.get("/auth/login/")
    assert response.status_code == 503
    body = response.content.decode()
    assert "cannot be reached" in body
    assert "Traceback" not in body
    assert AuditEvent.objects.filter(
        action=AuditAction.SIGNIN_FAILED, message__startswith="unavailable"
    ).exists()


def test_emulator_down_at_callback(entra_signin: Any, settings: Any) -> None:
    """Entra goes away between the sign-in page and the code redemption: a clear 503 page."""
    auth_uri = entra_signin.start()
    callback = entra_signin.callback_path(entra_signin.submit_credentials(auth_uri, *DANA))
    settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/{settings.ENTRA_TENANT_ID}"
    response = entra_signin.client.get(callback)
    assert response.status_code == 503
    assert b"cannot be reached" in response.content
    assert b"Traceback" not in response.content
    assert not _signed_in(entra_signin.client)


# -- sign-out ---------------------------------------------------------------------------------
def test_signout_flushes_session_deletes_tokens_and_goes_through_entra(
    entra_signin: Any, settings: Any
) -> None:
    """Sign-out: session flushed, token cache deleted, audited, redirected to Entra's logout."""
    from authn.models import UserTokenCache

    entra_signin(*DANA)
    user_id = int(entra_signin.client.session["_auth_user_id"])
    assert UserTokenCache.objects.filter(user_id=user_id).exists()
    assert entra_signin.client.get("/auth/logout/").status_code == 405  # POST only
    response = entra_signin.client.post("/auth/logout/")
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == (
        f"{settings.ENTRA_AUTHORITY}/oauth2/v2.0/logout"
    )
    assert parse_qs(target.query)["post_logout_redirect_uri"] == ["http://localhost/"]
    assert not _signed_in(entra_signin.client)
    assert not UserTokenCache.objects.filter(user_id=user_id).exists()
    assert AuditEvent.objects.filter(action=AuditAction.SIGNOUT, actor_upn=DANA[0]).exists()
    emu = entra_signin.browser.get(response["Location"], allow_redirects=False)
    assert emu.status_code in (200, 302, 303)


def test_logout_requires_csrf_token(entra_signin: Any) -> None:
    """The sign-out POST is CSRF-protected."""
    entra_signin(*DANA)
    strict = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
    strict.cookies = entra_signin.client.cookies
    assert strict.post("/auth/logout/").status_code == 403
    assert _signed_in(entra_signin.client)
