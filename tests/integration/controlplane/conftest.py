"""Fixtures of the control plane page tests: personas signed in through the emulators."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.test import Client

from tests.integration.authn.conftest import (  # noqa: F401 - fixtures re-exported
    EntraSignin,
    _isolated_caches,
    dps_instances,
)

INSTANCE = "dps-fleet-prod"
BASE = f"/dps/{INSTANCE}"
PERSONAS = {
    "carl": ("carl.certadmin@contoso-iot.example", "Carl-Demo-2026!"),  # certificates/*
    "cora": ("cora.certreader@contoso-iot.example", "Cora-Demo-2026!"),  # certificates/read
    "dana": ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!"),  # data plane only
    "oscar": ("oscar.operator@contoso-iot.example", "Oscar-Demo-2026!"),  # Reader: */read
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def persona(
    azure_settings: Any,
    dps_instances: Any,  # noqa: F811 - the fixture imported above
    endpoints: dict[str, Any],
) -> Callable[[str], Client]:
    """Return a factory: persona name → a Django test client signed in through the emulators."""
    clients: dict[str, Client] = {}

    def make(name: str) -> Client:
        if name not in clients:
            client = Client(SERVER_NAME="localhost")
            browser = requests.Session()
            browser.trust_env = False
            browser.verify = endpoints["ca_cert"]
            response = EntraSignin(client, browser)(*PERSONAS[name])
            assert response.status_code == 302, response.content[:500]
            clients[name] = client
        return clients[name]

    return make
