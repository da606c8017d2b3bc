"""Fixtures for the DPS service emulator: an in-process instance per test, SAS and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2; httpx still works for in-process calls.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from emulators.common.ca import TlsFiles, ensure_tls
from emulators.common.context import DPS_AUDIENCE, EmulatorContext
from emulators.common.keys import KeyStore
from emulators.common.tenant import DpsInstance, Tenant, load_tenant
from emulators.dps.app import create_app
from emulators.dps.service import Limits
from emulators.dps.store import DpsStore, store_path

API = "api-version=2021-10-01"
LOCAL_HOST = "127.0.0.1:4433"


def sas_token(
    host: str, policy: str, key_b64: str, *, ttl: int = 3600, sr: str | None = None
) -> str:
    """Build a DPS SAS header value as API.md §2.1 documents it."""
    se = str(int(time.time()) + ttl)
    resource = sr if sr is not None else host.lower()
    to_sign = urllib.parse.quote_plus(resource) + "\n" + se
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key_b64), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return "SharedAccessSignature " + urllib.parse.urlencode(
        {"sr": resource, "sig": sig, "se": se, "skn": policy}
    )


def v1_claims(tenant: Tenant, oid: str, **extra: Any) -> dict[str, Any]:
    """Return the claims of a v1 DPS access token for ``oid`` (as Entra would issue)."""
    now = int(time.time())
    return {
        "aud": DPS_AUDIENCE,
        "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
        "oid": oid,
        "sub": oid,
        "tid": tenant.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "ver": "1.0",
        "uti": uuid.uuid4().hex,
        **extra,
    }


@dataclass
class Dps:
    """One in-process emulated DPS instance with helpers to call it."""

    ctx: EmulatorContext
    instance: DpsInstance
    store: DpsStore
    client: TestClient

    def owner_sas(self) -> dict[str, str]:
        policy = next(
            p for p in self.instance.access_policies if p.key_name == "provisioningserviceowner"
        )
        return {"Authorization": sas_token(LOCAL_HOST, policy.key_name, policy.primary_key)}

    def policy_sas(self, name: str) -> dict[str, str]:
        policy = next(p for p in self.instance.access_policies if p.key_name == name)
        return {"Authorization": sas_token(LOCAL_HOST, policy.key_name, policy.primary_key)}

    def bearer(self, oid: str, **extra: Any) -> dict[str, str]:
        token = self.ctx.keys.sign(v1_claims(self.ctx.tenant, oid, **extra), v1=True)
        return {"Authorization": f"Bearer {token}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = None,
        query: str = API,
        raw: bytes | None = None,
    ) -> Any:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}{query}" if query else path
        hdrs = {**(auth if auth is not None else self.owner_sas()), **(headers or {})}
        content = raw
        if body is not None:
            content = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        return self.client.request(method, url, content=content, headers=hdrs)


@pytest.fixture(scope="session")
def dps_shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tenant, KeyStore, TlsFiles]:
    """Build the slow parts once: tenant, signing keys, TLS files."""
    base = tmp_path_factory.mktemp("dps-shared")
    return load_tenant(), KeyStore(base), ensure_tls(base)


@pytest.fixture
def make_dps(
    tmp_path: Path, dps_shared: tuple[Tenant, KeyStore, TlsFiles]
) -> Iterator[Callable[..., Dps]]:
    """Return a factory of fresh emulated instances (own state dir, quota switched off)."""
    tenant, keys, tls = dps_shared
    made: list[Dps] = []

    def factory(name: str = "dps-fleet-prod", limits: Limits | None = None) -> Dps:
        state = tmp_path / f"state-{len(made)}"
        state.mkdir()
        # The quota middleware is the other helper's subject; these tests must not trip it.
        (state / "dps-controls.json").write_text(json.dumps({"quota": {"enabled": False}}))
        instance = tenant.dps_by_name(name)
        assert instance is not None
        ctx = EmulatorContext(
            state_dir=state,
            tenant=tenant,
            keys=keys,
            tls=tls,
            host="127.0.0.1",
            dps_hosts={instance.name: LOCAL_HOST},
        )
        store = DpsStore(store_path(state, instance.name))
        app = create_app(ctx, instance, store=store, limits=limits)
        client = TestClient(app, base_url=f"https://{LOCAL_HOST}", raise_server_exceptions=True)
        dps = Dps(ctx, instance, store, client)
        made.append(dps)
        return dps

    yield factory
    for d in made:
        d.client.close()
        d.store.close()


@pytest.fixture
def dps(make_dps: Callable[..., Dps]) -> Dps:
    """Return a fresh dps-fleet-prod instance."""
    return make_dps()
