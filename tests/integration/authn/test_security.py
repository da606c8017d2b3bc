"""Cookies, security headers, CSRF and `check --deploy` with production settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")


def test_session_and_csrf_cookies_are_hardened(entra_signin: Any, settings: Any) -> None:
    """After sign-in the session cookie is HttpOnly, SameSite=Lax and Secure when TLS is on."""
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    response = entra_signin(*DANA)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True
    home = entra_signin.client.get("/")
    csrf = (
        home.cookies.get(settings.CSRF_COOKIE_NAME)
        or entra_signin.client.cookies[settings.CSRF_COOKIE_NAME]
    )
    assert csrf["samesite"] == "Lax"
    assert csrf["httponly"] is True


def test_security_headers_and_no_cache_on_auth_views(entra_signin: Any) -> None:
    home = entra_signin.client.get("/")
    csp = home["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert home["X-Content-Type-Options"] == "nosniff"
    assert home["Referrer-Policy"] == "same-origin"
    assert home["X-Frame-Options"] == "DENY"
    login = entra_signin.client.get("/auth/login/")
    assert "no-store" in login["Cache-Control"]
    assert "no-store" in home["Cache-Control"]


def test_templates_need_no_inline_script_or_style(entra_signin: Any) -> None:
    """CSP forbids inline code: no <style>, style=, <script> without src, or on* handlers."""
    import re

    entra_signin(*DANA)
    pages = [
        entra_signin.client.get("/").content.decode(),
        entra_signin.client.get("/auth/login/?x").content.decode(),
    ]
    for html in pages:
        assert "<style" not in html
        assert not re.search(r"\sstyle=", html)
        assert not re.search(r"<script(?![^>]*\ssrc=)", html)
        assert not re.search(r"\son[a-z]+=", html)


def test_hsts_when_tls(client: Any, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = False
    response = client.get("/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_check_deploy_is_clean_with_production_settings() -> None:
    """`make check-deploy`: manage.py check --deploy --fail-level WARNING passes."""
    from cryptography.fernet import Fernet

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ENTRA_", "EMULATOR_", "AZURE_", "ARM_", "PORTAL_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY="k" * 20 + "-production-secret-" + "z" * 30,
        DJANGO_ALLOWED_HOSTS="portal.example.com",
        ENTRA_TENANT_ID="00000000-0000-0000-0000-000000000001",
        ENTRA_CLIENT_ID="00000000-0000-0000-0000-000000000002",
        ENTRA_CLIENT_SECRET="x",
        TOKEN_CACHE_KEYS=Fernet.generate_key().decode(),
    )
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "manage.py",
            "check",
            "--deploy",
            "--fail-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _directive(csp: str, name: str) -> list[str]:
    """Return the sources of one CSP directive (empty when the policy lacks it)."""
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    return []


def test_form_action_allows_only_the_portal_and_the_entra_authority(
    entra_signin: Any, endpoints: dict[str, Any], settings: Any
) -> None:
    """Forms post to the portal; sign-out's redirect goes on to the authority; nowhere else."""
    authority = urlsplit(endpoints["authority"])
    origin = f"{authority.scheme}://{authority.netloc}"
    home = entra_signin.client.get("/")
    assert _directive(home["Content-Security-Policy"], "form-action") == ["'self'", origin]
    # The sign-out POST is answered with a redirect to the authority: the one origin it needs.
    entra_signin(*DANA)
    out = entra_signin.client.post("/auth/logout/")
    assert out.status_code == 302
    assert out["Location"].startswith(origin + "/")
    settings.ENTRA_AUTHORITY = None
    settings.ENTRA_TENANT_ID = "00000000-0000-0000-0000-000000000001"
    public = entra_signin.client.get("/healthz")
    assert _directive(public["Content-Security-Policy"], "form-action") == [
        "'self'",
        "https://login.microsoftonline.com",
    ]
