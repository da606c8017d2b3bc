"""State survives a restart of the app; concurrent writers through the app lose nothing."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from emulators.dps.app import create_app
from emulators.dps.store import DpsStore, store_path
from tests.integration.emulators.dps.conftest import LOCAL_HOST, Dps, TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def test_records_survive_a_restart(dps: Dps) -> None:
    """A new app on the same state directory serves what the old one stored."""
    put = dps.call(
        "PUT",
        "/enrollments/keep-me",
        body={"registrationId": "keep-me", "attestation": {"type": "symmetricKey"}},
    )
    assert put.status_code == 200
    dps.client.close()
    dps.store.close()
    store = DpsStore(store_path(dps.ctx.state_dir, dps.instance.name))
    app = create_app(dps.ctx, dps.instance, store=store)
    with TestClient(app, base_url=f"https://{LOCAL_HOST}") as client:
        dps.client = client
        dps.store = store
        got = dps.call("POST", "/enrollments/keep-me/attestationmechanism")
        assert got.status_code == 200
        assert got.json() == put.json()["attestation"]


def test_concurrent_requests_are_safe(dps: Dps) -> None:
    """Threads creating and updating through the API leave a consistent store."""
    errors: list[Any] = []

    def worker(n: int) -> None:
        for i in range(15):
            rid = f"t{n}-{i}"
            body = {"registrationId": rid, "attestation": {"type": "symmetricKey"}}
            first = dps.call("PUT", f"/enrollments/{rid}", body=body)
            second = dps.call(
                "PUT", f"/enrollments/{rid}", body=body, headers={"If-Match": first.json()["etag"]}
            )
            if (first.status_code, second.status_code) != (200, 200):
                errors.append((first.status_code, second.status_code))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert dps.store.count_enrollments() == 60
    listed = dps.call("POST", "/enrollments/query", body={"query": "*"}).json()
    assert len(listed) == 60
    assert len({json.dumps(d["registrationId"]) for d in listed}) == 60
