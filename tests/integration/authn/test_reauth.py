"""Expired or revoked refresh tokens: a "sign in again" prompt that returns to the same page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache

from audit.models import AuditAction, AuditEvent, AuditOutcome

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
PAGE = "/?instance=dps-fleet-lab"


def _short_lived_signin(entra_signin: Any, entra_control: Any) -> None:
    # Access tokens shorter than MSAL's 5-minute margin: every use needs the refresh token.
    entra_control.lifetimes(access_token=60)
    assert entra_signin(*DANA).status_code == 302
    assert entra_signin.client.get(PAGE).status_code == 200
    cache.clear()  # drop cached capabilities so the next page asks ARM (and Entra) again


def _assert_reauth_prompt(response: Any) -> str:
    assert response.status_code == 401
    body = response.content.decode()
    assert 'data-testid="reauth"' in body
    assert "Traceback" not in body
    start = body.index('data-testid="reauth-signin"')
    href = body.rfind('href="', 0, start)
    login_url = body[href + 6 : body.index('"', href + 6)].replace("&amp;", "&")
    assert urlsplit(login_url).path == "/auth/login/"
    assert parse_qs(urlsplit(login_url).query)["next"] == [PAGE]
    event = AuditEvent.objects.filter(action=AuditAction.REAUTH).latest("id")
    assert (event.actor_upn, event.outcome) == (DANA[0], AuditOutcome.FAILED)
    assert "invalid_grant" in event.message
    return login_url


def test_expired_refresh_token_prompts_and_returns_to_the_same_page(
    entra_signin: Any, entra_control: Any, dps_instances: Any
) -> None:
    """After the refresh token expires, the page asks to sign in again and comes back to it."""
    _short_lived_signin(entra_signin, entra_control)
    assert entra_control.expire_refresh_tokens(DANA[0]) >= 1
    login_url = _assert_reauth_prompt(entra_signin.client.get(PAGE))
    # Entra still has a browser session (SSO): following the link signs straight back in.
    start = entra_signin.client.get(login_url)
    emu = entra_signin.submit_credentials(start["Location"], *DANA)
    back = entra_signin.client.get(entra_signin.callback_path(emu))
    assert back.status_code == 302
    assert back["Location"] == PAGE
    page = entra_signin.client.get(PAGE)
    assert page.status_code == 200
    assert b'data-testid="capability-enrollments-write"' in page.content


def test_revoked_sessions_prompt_for_credentials_again(
    entra_signin: Any, entra_control: Any, dps_instances: Any
) -> None:
    """After an admin revokes the user's sessions, the prompt leads to the password form again."""
    _short_lived_signin(entra_signin, entra_control)
    assert entra_control.revoke(DANA[0]) >= 1
    login_url = _assert_reauth_prompt(entra_signin.client.get(PAGE))
    start = entra_signin.client.get(login_url)
    form = entra_signin.browser.get(start["Location"], allow_redirects=False)
    assert form.status_code == 200
    assert 'name="passwd"' in form.text.replace("name=passwd", 'name="passwd"')
    emu = entra_signin.submit_credentials(start["Location"], *DANA)
    back = entra_signin.client.get(entra_signin.callback_path(emu))
    assert back["Location"] == PAGE


def test_htmx_requests_get_a_redirect_header(
    entra_signin: Any, entra_control: Any, dps_instances: Any
) -> None:
    """An htmx request is told where to go with HX-Redirect instead of a page fragment."""
    _short_lived_signin(entra_signin, entra_control)
    entra_control.expire_refresh_tokens(DANA[0])
    response = entra_signin.client.get(PAGE, HTTP_HX_REQUEST="true")
    assert response.status_code == 401
    assert response["HX-Redirect"].startswith("/auth/login/?next=")
