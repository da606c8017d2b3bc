"""Fixtures of the enrollments unit tests: a DpsClient over ``responses`` with recorded sleeps."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import responses

from enrollments.dps.client import DpsClient

HOST = "unit-dps.azure-devices-provisioning.net"
BASE = f"https://{HOST}"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1bml0LXRlc3QifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


class Sleeps(list[float]):
    """A ``sleep`` that records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Return a RequestsMock that fails the test when a registered response is not used."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def dps(mocked: responses.RequestsMock, sleeps: Sleeps) -> DpsClient:
    """Return a client with a bearer token, a 15 s timeout and recorded sleeps."""
    return DpsClient(
        HOST,
        lambda: f"Bearer {TOKEN}",
        ca_bundle="/tmp/unit-ca.pem",
        timeout=15,
        sleep=sleeps,
        rng=random.Random(7),
    )
