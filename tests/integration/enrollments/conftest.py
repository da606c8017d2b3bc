"""Fixtures of the enrollment page tests: demo users signed in through the emulators, seeded records.

Sign-in reuses the authn tests' helpers (tests/integration/authn/conftest.py): each persona gets
its own browser session at the Entra emulator and its own Django test client, so every DPS
call the pages make carries that user's real OBO token and every capability comes from ARM.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.test import Client

from enrollments.dps.auth import parse_connection_string
from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, EnrollmentGroup, IndividualEnrollment
from tests.integration.authn.conftest import (  # noqa: F401 - fixtures re-exported
    EntraSignin,
    _isolated_caches,
    dps_instances,
)

INSTANCE = "dps-fleet-prod"
PERSONAS: dict[str, tuple[str, str] | None] = {
    "dana": ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!"),
    "reggie": ("reggie.reader@contoso-iot.example", "Reggie-Demo-2026!"),
    "kim": ("kim.keyreader@contoso-iot.example", "Kim-Demo-2026!"),
    "nora": ("nora.norole@contoso-iot.example", "Nora-Demo-2026!"),
    "anonymous": None,
    "ada": ("ada.admin@contoso-iot.example", "Ada-Demo-2026!"),
    "oscar": ("oscar.operator@contoso-iot.example", "Oscar-Demo-2026!"),
}
# A TPM 2.0 endorsement key (public area) as in the DPS client tests.
ENDORSEMENT_KEY = (
    "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAibym9HQP9vxCGF5d"
    "Vc1QQsAGe021aUGJzNol1/gycBx3jFsTpwmWbISRwnFvflWd0w2Mc44FAAZNaJOAAxwZvG8GvyLlHh6fGKdh+mSBL4iLH2bZ"
    "4Ry22cB3CJVjXmdGoz9Y/j3/NwLndBxQC+baNvzvyVQZ4/A2YL7vzIIj2ik4y+ve9ir7U0GbNdnxskqK1KFIITVVtkTIYyyF"
    "TIR0BySjPrRIDj7r7Mh5uF9HBppGKKCMuUM0mzmSEuZcHcfUijnVj0/dwuyGZaDmY+G4g5S2OcYS3ANFxQYPAgWd8ic6iqH7"
    "CBEvv5RtG4Q5cnjC6P5cQ3sEnn3d0A4QnWb3SBDhTkndvfoL0PEH68ZIrQ=="
)


def unique(prefix: str) -> str:
    """Return an id no other test uses (the emulator lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def dps_entry(endpoints: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in endpoints["dps"] if d["name"] == INSTANCE)


@pytest.fixture
def owner_client(endpoints: dict[str, Any], dps_entry: dict[str, Any]) -> DpsClient:
    """A DPS client with the owner policy's SAS: seeds and checks records behind the portal."""
    cs = parse_connection_string(dps_entry["connection_string"])
    return DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"], timeout=10)


@pytest.fixture
def seed(owner_client: DpsClient, dps_entry: dict[str, Any], endpoints: dict[str, Any]) -> Any:
    """Create records in the emulator directly."""

    class Seed:
        def enrollment(self, rid: str | None = None, **fields: Any) -> IndividualEnrollment:
            fields.setdefault("attestation", AttestationMechanism.for_symmetric_key())
            return owner_client.enrollment_put(
                IndividualEnrollment(registration_id=rid or unique("e"), **fields)
            )

        def group(self, gid: str | None = None, **fields: Any) -> EnrollmentGroup:
            fields.setdefault("attestation", AttestationMechanism.for_symmetric_key())
            return owner_client.group_put(
                EnrollmentGroup(enrollment_group_id=gid or unique("g"), **fields)
            )

        def registration(self, rid: str, group_id: str | None = None) -> dict[str, Any]:
            session = requests.Session()
            session.trust_env = False
            body: dict[str, Any] = {"registrationId": rid}
            if group_id:
                body["enrollmentGroupId"] = group_id
            response = session.post(
                f"https://{dps_entry['host']}/_emulator/registrations",
                json=body,
                verify=endpoints["ca_cert"],
                timeout=10,
            )
            assert response.status_code < 300, response.text
            return dict(response.json())

    return Seed()


@pytest.fixture
def signed_in(
    azure_settings: Any,
    dps_instances: Any,  # noqa: F811 - the fixture imported above
    endpoints: dict[str, Any],
) -> Callable[[str], Client]:
    """Return a factory: persona name → a Django test client signed in through the emulators."""
    clients: dict[str, Client] = {}

    def make(persona: str) -> Client:
        if persona in clients:
            return clients[persona]
        client = Client(SERVER_NAME="localhost")
        creds = PERSONAS[persona]
        if creds is not None:
            browser = requests.Session()
            browser.trust_env = False
            browser.verify = endpoints["ca_cert"]
            response = EntraSignin(client, browser)(*creds)
            assert response.status_code == 302, response.content[:500]
        clients[persona] = client
        return client

    return make
