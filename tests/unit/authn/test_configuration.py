"""With no emulator settings the portal talks to public Azure with the system trust store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from authn import msal_app
from tests.support import certs

ROOT = Path(__file__).resolve().parents[3]

_PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from authn import msal_app
from authn.arm import ArmClient
print(json.dumps({
    "authority": msal_app.authority(),
    "discovery": msal_app.is_microsoft_host(msal_app.authority()),
    "arm": ArmClient().base_url,
    "dps_suffix": settings.DPS_HOST_SUFFIX,
    "dps_emulator_hosts": settings.DPS_EMULATOR_HOSTS,
    "verify": msal_app.http_session().verify,
    "trust_env": msal_app.http_session().trust_env,
    "api_scope": msal_app.api_scope(),
    "credential": msal_app.credential_kind(),
}))
"""


def test_production_defaults_are_public_azure():
    """A fresh process with only the tenant, client id and secret set uses public Azure."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENTRA_", "ARM_", "DPS_", "AZURE_", "EMULATOR_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_DEBUG="false",
        ENTRA_TENANT_ID="11111111-2222-3333-4444-555555555555",
        ENTRA_CLIENT_ID="66666666-7777-8888-9999-000000000000",
        ENTRA_CLIENT_SECRET="not-a-real-secret",
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data == {
        "authority": "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555",
        "discovery": True,
        "arm": "https://management.azure.com",
        "dps_suffix": [".azure-devices-provisioning.net"],
        "dps_emulator_hosts": {},
        "verify": True,
        "trust_env": False,
        "api_scope": "api://66666666-7777-8888-9999-000000000000/user_impersonation",
        "credential": "secret",
    }


@pytest.mark.parametrize(
    ("url", "microsoft"),
    [
        ("https://login.microsoftonline.com/t", True),
        ("https://LOGIN.MICROSOFTONLINE.US/t", True),
        ("https://127.0.0.1:9443/t", False),
        ("https://login.microsoftonline.com.evil.example/t", False),
    ],
)
def test_instance_discovery_only_for_microsoft_hosts(url, microsoft):
    assert msal_app.is_microsoft_host(url) is microsoft


def test_credential_is_chosen_by_configuration(tmp_path):
    with override_settings(
        ENTRA_USE_WORKLOAD_IDENTITY=False,
        ENTRA_CLIENT_CERTIFICATE_PATH=None,
        ENTRA_CLIENT_SECRET="s3cret",
    ):
        assert msal_app.client_credential() == "s3cret"
    pem = _key_and_cert_pem()
    path = tmp_path / "portal.pem"
    path.write_text(pem)
    with override_settings(
        ENTRA_USE_WORKLOAD_IDENTITY=False,
        ENTRA_CLIENT_CERTIFICATE_PATH=str(path),
        ENTRA_CLIENT_SECRET="s3cret",
    ):
        cred = msal_app.client_credential()
        assert cred["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
        assert cred["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")
        assert "thumbprint" not in cred  # PS256 + x5t#S256
    with override_settings(
        ENTRA_USE_WORKLOAD_IDENTITY=True, ENTRA_CLIENT_CERTIFICATE_PATH=str(path)
    ):
        cred = msal_app.client_credential()
        assert callable(cred["client_assertion"])
    with (
        override_settings(
            ENTRA_USE_WORKLOAD_IDENTITY=False,
            ENTRA_CLIENT_CERTIFICATE_PATH=None,
            ENTRA_CLIENT_SECRET=None,
        ),
        pytest.raises(ImproperlyConfigured),
    ):
        msal_app.client_credential()


def test_federated_assertion_comes_from_azure_identity(monkeypatch):
    """Workload identity: the assertion is the managed identity's token for AzureADTokenExchange."""
    import azure.identity

    calls = []

    class FakeCredential:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def get_token(self, scope):
            calls.append(scope)
            return type("T", (), {"token": "federated-assertion"})()

    monkeypatch.setattr(azure.identity, "WorkloadIdentityCredential", FakeCredential)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")
    assert msal_app._federated_assertion() == "federated-assertion"
    assert calls[-1] == "api://AzureADTokenExchange/.default"


def test_certificate_file_without_key_is_a_configuration_error(tmp_path):
    path = tmp_path / "cert-only.pem"
    path.write_text(_key_and_cert_pem().split("-----END PRIVATE KEY-----")[1])
    with (
        override_settings(
            ENTRA_USE_WORKLOAD_IDENTITY=False, ENTRA_CLIENT_CERTIFICATE_PATH=str(path)
        ),
        pytest.raises(ImproperlyConfigured),
    ):
        msal_app.client_credential()


def _key_and_cert_pem() -> str:
    portal = certs.certificate("portal", key=certs.rsa_key(), days=1)
    return certs.key_pem(portal.key) + certs.pem(portal.cert)
