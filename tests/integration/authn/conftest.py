"""Fixtures of the authn integration tests: a clean cache, a sign-in helper against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.test import Client

_FORM_ACTION = re.compile(r'<form method=post action="([^"]+)"')
_CTX = re.compile(r'name=ctx value="([^"]*)"')


def _found(pattern: re.Pattern[str], page: str) -> str:
    """Return the unescaped first group of ``pattern`` on the emulator's sign-in page."""
    match = pattern.search(page)
    assert match, f"{pattern.pattern} not on the sign-in page: {page[:500]}"
    return unescape(match.group(1))


@pytest.fixture(autouse=True)
def _isolated_caches(settings: Any) -> None:
    """Give every test its own in-memory Django cache (module caches: tests/conftest.py)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def portal_client() -> Client:
    """A test client on a host the emulator accepts as redirect URI (loopback, any port)."""
    return Client(SERVER_NAME="localhost")


@pytest.fixture
def browser(endpoints: dict[str, Any]) -> requests.Session:
    """A requests session playing the user's browser on the emulator's pages."""
    session = requests.Session()
    session.trust_env = False
    session.verify = endpoints["ca_cert"]
    return session


def user_entry(endpoints: dict[str, Any], username: str) -> dict[str, Any]:
    return next(u for u in endpoints["users"] if u["username"] == username)


class EntraSignin:
    """Drive a sign-in: portal /auth/login → emulator form → portal /auth/callback."""

    def __init__(self, client: Client, browser: requests.Session) -> None:
        self.client = client
        self.browser = browser

    def start(self, next_url: str = "/") -> str:
        response = self.client.get("/auth/login/", {"next": next_url})
        assert response.status_code == 302, response.content[:500]
        return str(response["Location"])

    def submit_credentials(self, auth_uri: str, username: str, password: str) -> requests.Response:
        page = self.browser.get(auth_uri, allow_redirects=False)
        if page.status_code in (302, 303):
            return page  # single sign-on: the emulator remembered this browser
        assert page.status_code == 200, page.text[:500]
        action, ctx = (_found(pattern, page.text) for pattern in (_FORM_ACTION, _CTX))
        return self.browser.post(
            urljoin(auth_uri, action),
            data={"ctx": ctx, "login": username, "passwd": password},
            allow_redirects=False,
        )

    def callback_path(self, emulator_response: requests.Response) -> str:
        assert emulator_response.status_code in (302, 303), emulator_response.text[:500]
        location = urlsplit(emulator_response.headers["Location"])
        assert location.path == "/auth/callback", location
        return f"{location.path}?{location.query}"

    def __call__(self, username: str, password: str, next_url: str = "/") -> Any:
        auth_uri = self.start(next_url)
        callback = self.callback_path(self.submit_credentials(auth_uri, username, password))
        return self.client.get(callback)


@pytest.fixture
def entra_signin(
    azure_settings: Any, portal_client: Client, browser: requests.Session
) -> EntraSignin:
    return EntraSignin(portal_client, browser)


@pytest.fixture
def dps_instances(db: Any, emulators: Any, settings: Any) -> list[Any]:
    """Register the emulators' DPS instances as the dev script does (emulator hosts allowed)."""
    from django.core.management import call_command

    from tests.conftest import emulator_dps_hosts

    settings.DPS_EMULATOR_HOSTS = emulator_dps_hosts(emulators.endpoints())

    call_command(
        "dps_instance_import", "--from-endpoints", str(emulators.state_dir / "endpoints.json")
    )
    from instances.models import DpsInstance

    return list(DpsInstance.objects.all())


class EmulatorControl:
    """The Entra emulator's loopback-only control routes."""

    def __init__(self, endpoints: dict[str, Any], browser: requests.Session) -> None:
        self.base = endpoints["entra_endpoint"]
        self.http = browser

    def lifetimes(self, **values: int) -> dict[str, int]:
        response = self.http.post(f"{self.base}/_emulator/lifetimes", json=values)
        response.raise_for_status()
        return dict(response.json())

    def expire_refresh_tokens(self, username: str) -> int:
        response = self.http.post(
            f"{self.base}/_emulator/expire-refresh-tokens", params={"username": username}
        )
        response.raise_for_status()
        return int(response.json()["expired"])

    def revoke(self, username: str) -> int:
        response = self.http.post(f"{self.base}/_emulator/revoke", params={"username": username})
        response.raise_for_status()
        return int(response.json()["revoked"])


@pytest.fixture
def entra_control(
    endpoints: dict[str, Any], browser: requests.Session
) -> Iterator[EmulatorControl]:
    """Control the emulator; lifetimes are restored afterwards (the emulator is per session)."""
    control = EmulatorControl(endpoints, browser)
    saved = control.lifetimes()
    yield control
    control.lifetimes(**saved)
