"""Fixtures for the Entra ID and ARM emulator tests: HTTP sessions, MSAL apps, sign-in, JWKS."""

from __future__ import annotations

import json
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import msal
import pytest
import requests

from emulators.common.server import EmulatorStack
from emulators.common.tenant import DEFAULT_TENANT_FILE
from tests.support.certs import certificate, pem, rsa_key

PORTAL = "DPS Enrollment Portal"
CALLBACK = "http://localhost:8000/auth/callback"
DPS_SCOPE = "https://azure-devices-provisioning.net/.default"
ARM_SCOPE = "https://management.azure.com/user_impersonation"
CERT_APP_ID = "7a0c5a61-2c3f-4a7e-9d65-3b1f0e6c2d11"


def make_session(ca: str) -> requests.Session:
    """Return a session trusting only the emulator CA (REQUESTS_CA_BUNDLE must not win)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    return s


class Entra:
    """Test helpers bound to one running stack."""

    def __init__(self, stack: EmulatorStack) -> None:
        self.stack = stack
        self.endpoints = stack.endpoints()
        self.ca = self.endpoints["ca_cert"]
        self.authority = self.endpoints["authority"]
        self.base = self.endpoints["entra_endpoint"]
        self.token_url = f"{self.authority}/oauth2/v2.0/token"
        self.http = make_session(self.ca)

    def app(self, name: str = PORTAL) -> dict[str, Any]:
        return next(a for a in self.endpoints["apps"] if a["name"] == name)

    def user(self, prefix: str) -> dict[str, Any]:
        return next(u for u in self.endpoints["users"] if u["username"].startswith(prefix + "@"))

    @property
    def api_scope(self) -> str:
        return self.app()["api_scopes"][0]

    def msal_app(
        self, name: str = PORTAL, credential: Any = None
    ) -> msal.ConfidentialClientApplication:
        """Return a fresh MSAL app (MSAL replays 400 answers per app object for 60 s)."""
        a = self.app(name) if name in {x["name"] for x in self.endpoints["apps"]} else None
        client_id = a["client_id"] if a else name
        if credential is None:
            assert a is not None, f"{name} is no app of the tenant: pass its credential"
            credential = a["client_secret"]
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential,
            authority=self.authority,
            instance_discovery=False,
            http_client=make_session(self.ca),
        )

    def browser(self) -> requests.Session:
        return make_session(self.ca)

    def open_signin(self, browser: requests.Session, auth_uri: str) -> tuple[str, str]:
        """GET the authorize URL; return (form action URL, transaction id) of the sign-in page."""
        r = browser.get(auth_uri, allow_redirects=False)
        assert r.status_code == 200, r.text[:500]
        return signin_form(r)

    def submit(
        self, browser: requests.Session, action: str, txn: str, username: str, password: str
    ) -> requests.Response:
        return browser.post(
            action, data={"ctx": txn, "login": username, "passwd": password}, allow_redirects=False
        )

    def sign_in(
        self,
        auth_uri: str,
        username: str,
        password: str | None = None,
        browser: requests.Session | None = None,
    ) -> dict[str, str]:
        """Drive the sign-in page like a browser; return the redirect's query parameters."""
        browser = browser or self.browser()
        if password is None:
            password = next(
                u["password"] for u in self.endpoints["users"] if u["username"] == username
            )
        action, txn = self.open_signin(browser, auth_uri)
        r = self.submit(browser, action, txn, username, password)
        assert r.status_code == 302, r.text[:500]
        return query_of(r.headers["location"])

    def user_tokens(
        self,
        who: str,
        scopes: list[str] | None = None,
        app: msal.ConfidentialClientApplication | None = None,
    ) -> dict[str, Any]:
        """Sign ``who`` (username prefix) in through the portal app; return MSAL's result."""
        app = app or self.msal_app()
        with warnings.catch_warnings():
            # MSAL recommends form_post; the portal uses query (DESIGN §4).
            warnings.simplefilter("ignore", UserWarning)
            flow = app.initiate_auth_code_flow(scopes or [self.api_scope], redirect_uri=CALLBACK)
        user = self.user(who)
        result = app.acquire_token_by_auth_code_flow(
            flow, self.sign_in(flow["auth_uri"], user["username"], user["password"])
        )
        assert "access_token" in result, result
        return result

    def jwks(self) -> jwt.PyJWKSet:
        r = self.http.get(f"{self.authority}/discovery/v2.0/keys")
        r.raise_for_status()
        return jwt.PyJWKSet.from_dict(r.json())

    def verify(self, token: str, audience: str, issuer: str | None = None) -> dict[str, Any]:
        """Verify ``token`` with PyJWT against the JWKS fetched over HTTPS."""
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in self.jwks().keys if k.key_id == kid)
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud"]},
        )

    def token_post(self, data: dict[str, str], **kw: Any) -> requests.Response:
        return self.http.post(self.token_url, data=data, **kw)

    @property
    def v1_issuer(self) -> str:
        return f"https://sts.windows.net/{self.endpoints['tenant_id']}/"

    @property
    def v2_issuer(self) -> str:
        return f"{self.authority}/v2.0"


def signin_form(r: requests.Response) -> tuple[str, str]:
    action = re.search(r'<form method=post action="([^"]+)"', r.text)
    txn = re.search(r'name=ctx value="([^"]+)"', r.text)
    assert action, r.text[:500]
    assert txn, r.text[:500]
    return urljoin(r.url, action.group(1)), txn.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def assert_entra_error(r: requests.Response, status: int, error: str, code: int) -> dict[str, Any]:
    """Assert Entra's error shape (reference/identity §3.8) and return the body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert body["error"] == error, body
    assert body["error_description"].startswith(f"AADSTS{code}:"), body["error_description"]
    assert body["error_codes"] == [code]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])
    assert "Trace ID:" in body["error_description"]
    return body


@pytest.fixture(scope="session")
def entra(emulators: EmulatorStack) -> Entra:
    """Helpers for the shared stack of the default tenant (do not change its global state)."""
    return Entra(emulators)


@pytest.fixture
def private_entra(tmp_path: Path) -> Iterator[Entra]:
    """A stack of the default tenant of one's own, for tests that rotate keys or revoke tokens."""
    stack = EmulatorStack(tmp_path / "state").start()
    try:
        yield Entra(stack)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def cert_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stack whose tenant adds an app with a registered certificate and no consent."""
    # RSA: MSAL signs client assertions RS256 or PS256.
    app_cert = certificate("cert-app", key=rsa_key())
    tenant = json.loads(DEFAULT_TENANT_FILE.read_text())
    tenant["apps"].append(
        {
            "name": "cert-app",
            "client_id": CERT_APP_ID,
            "service_principal_id": "0b7f5a3e-8d0f-4f7b-9f3c-5e2a7c9d1b44",
            "certificates": [pem(app_cert.cert)],
            "redirect_uris": ["https://app.example/callback"],
            "post_logout_redirect_uris": ["https://app.example/"],
        }
    )
    root = tmp_path_factory.mktemp("cert-tenant")
    path = root / "tenant.json"
    path.write_text(json.dumps(tenant))
    stack = EmulatorStack(root / "state", tenant_file=path).start()
    try:
        yield {"entra": Entra(stack), "key": app_cert.key, "cert": app_cert.cert}
    finally:
        stack.stop()


@pytest.fixture
def fresh_browser(entra: Entra) -> Callable[[], requests.Session]:
    return entra.browser
