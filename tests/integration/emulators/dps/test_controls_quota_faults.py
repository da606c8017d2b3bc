"""Quotas, injected faults, latency and the control routes of the DPS emulator, over HTTPS.

A private emulator stack per module; every test starts from the default configuration.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests

SERVICE_API = "2021-10-01"


def _sas(resource: str, key_b64: str, key_name: str) -> str:
    se = str(int(time.time()) + 3600)
    to_sign = urllib.parse.quote(resource, safe="") + "\n" + se
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key_b64), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return "SharedAccessSignature " + urllib.parse.urlencode(
        {"sr": resource, "sig": sig, "se": se, "skn": key_name}
    )


class Dps:
    def __init__(self, entry: dict[str, Any], ca: str) -> None:
        self.host = entry["host"]
        self.id_scope = entry["id_scope"]
        parts = dict(p.split("=", 1) for p in entry["connection_string"].split(";"))
        self.auth = {
            "Authorization": _sas(self.host, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
        }
        self.base = f"https://{self.host}"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = ca

    def get(self, path: str = "/enrollments/nobody") -> requests.Response:
        return self.http.get(
            f"{self.base}{path}", params={"api-version": SERVICE_API}, headers=self.auth, timeout=10
        )

    def bulk(self) -> requests.Response:
        body = {
            "mode": "create",
            "enrollments": [
                {"registrationId": f"bulk-{i}", "attestation": {"type": "symmetricKey"}}
                for i in range(10)
            ],
        }
        return self.http.post(
            f"{self.base}/enrollments",
            params={"api-version": SERVICE_API},
            headers=self.auth,
            json=body,
            timeout=10,
        )

    def register(self, registration_id: str = "nobody") -> requests.Response:
        return self.http.put(
            f"{self.base}/{self.id_scope}/registrations/{registration_id}/register",
            params={"api-version": "2021-06-01"},
            json={"registrationId": registration_id},
            timeout=10,
        )

    def control(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.base}/_emulator{path}", timeout=10, **kw)

    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        r = self.control("PUT", "/config", json=config)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from emulators.common.server import EmulatorStack

    s = EmulatorStack(tmp_path_factory.mktemp("dps-controls")).start()
    yield s
    s.stop()


@pytest.fixture
def dps(stack: Any) -> Iterator[Dps]:
    endpoints = stack.endpoints()
    client = Dps(endpoints["dps"][0], endpoints["ca_cert"])
    defaults = client.control("GET", "/config").json()
    assert client.control("POST", "/reset").status_code == 204
    yield client
    client.configure(defaults)
    client.control("POST", "/reset")
    client.http.close()


def _assert_dps_error(r: requests.Response, status: int, code: int) -> None:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-ms-error-code"] == str(code)
    body = r.json()
    assert body["errorCode"] == code
    assert set(body) >= {"trackingId", "message", "timestampUtc"}


# -- quota ---------------------------------------------------------------------------------------
def test_the_call_after_the_quota_gets_429_with_retry_after_until_reset(dps):
    dps.configure({"quota": {"operations_per_minute": 5}})
    assert [dps.get().status_code for _ in range(5)] == [404] * 5
    r = dps.get()
    _assert_dps_error(r, 429, 429001)
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert dps.control("GET", "/stats").json()["throttled"] == 1

    assert dps.control("POST", "/reset").status_code == 204
    assert dps.get().status_code == 404


def test_a_bulk_call_of_ten_items_counts_one_operation(dps):
    dps.configure({"quota": {"operations_per_minute": 2}})
    assert dps.bulk().status_code == 200
    assert dps.get().status_code == 404
    assert dps.bulk().status_code == 429


def test_device_registrations_have_their_own_budget(dps):
    dps.configure({"quota": {"operations_per_minute": 100, "registrations_per_minute": 2}})
    assert [dps.register().status_code for _ in range(2)] == [401, 401]
    _assert_dps_error(dps.register(), 429, 429001)
    assert dps.get().status_code == 404
    stats = dps.control("GET", "/stats").json()
    assert (stats["device_registrations"], stats["service_operations"]) == (3, 1)


def test_a_disabled_quota_never_throttles(dps):
    dps.configure({"quota": {"enabled": False, "operations_per_minute": 1}})
    assert {dps.get().status_code for _ in range(5)} == {404}


def test_control_routes_are_not_counted_and_still_answer_when_throttled(dps):
    dps.configure({"quota": {"operations_per_minute": 1}})
    for _ in range(5):
        assert dps.control("GET", "/stats").status_code == 200
    assert dps.get().status_code == 404
    assert dps.get().status_code == 429
    assert dps.control("GET", "/config").status_code == 200
    assert dps.control("GET", "/stats").json()["service_operations"] == 2


# -- faults --------------------------------------------------------------------------------------
def test_503_at_probability_one_fails_every_call_with_retry_after(dps):
    dps.configure({"faults": {"rules": [{"kind": "503", "probability": 1.0, "retry_after": 7}]}})
    for _ in range(4):
        r = dps.get()
        _assert_dps_error(r, 503, 503001)
        assert r.headers["Retry-After"] == "7"
    assert dps.control("GET", "/stats").json()["faults"]["503"] == 4
    assert dps.control("GET", "/config").status_code == 200  # control routes never fault


def test_a_fault_can_target_a_method_and_path_prefix(dps):
    dps.configure(
        {
            "faults": {
                "rules": [
                    {
                        "kind": "500",
                        "probability": 1.0,
                        "methods": ["GET"],
                        "path_prefix": "/Enrollments/",
                    }
                ]
            }
        }
    )
    _assert_dps_error(dps.get("/enrollments/x"), 500, 500001)
    assert dps.get("/registrations/x").status_code == 404
    assert dps.bulk().status_code == 200


def test_a_seeded_fault_rate_gives_the_same_sequence_twice(dps):
    config = {"faults": {"seed": 1234, "rules": [{"kind": "500", "probability": 0.5}]}}

    def sequence() -> list[int]:
        dps.configure(config)  # re-seeds
        return [dps.get().status_code for _ in range(24)]

    first = sequence()
    assert set(first) == {404, 500}
    assert sequence() == first
    dps.configure({"faults": {"seed": 4321, "rules": [{"kind": "500", "probability": 0.5}]}})
    assert [dps.get().status_code for _ in range(24)] != first


def test_a_dropped_connection_makes_requests_raise_connection_error(dps):
    dps.configure({"faults": {"rules": [{"kind": "drop", "probability": 1.0}]}})
    with pytest.raises(requests.exceptions.ConnectionError):
        dps.get()
    assert dps.control("GET", "/stats").json()["faults"]["drop"] == 1


def test_a_timeout_fault_holds_the_response_then_answers(dps):
    dps.configure({"faults": {"rules": [{"kind": "timeout", "probability": 1.0, "seconds": 0.4}]}})
    started = time.monotonic()
    r = dps.get()
    assert time.monotonic() - started >= 0.4
    assert r.status_code == 404
    with pytest.raises(requests.exceptions.ReadTimeout):
        dps.http.get(
            f"{dps.base}/enrollments/x",
            params={"api-version": SERVICE_API},
            headers=dps.auth,
            timeout=0.1,
        )


def test_added_latency_delays_each_call_by_at_least_the_fixed_part(dps):
    dps.configure({"latency": {"fixed_ms": 300, "jitter_ms": 50}})
    started = time.monotonic()
    assert dps.get().status_code == 404
    assert time.monotonic() - started >= 0.3
    assert dps.control("GET", "/stats").json()["delayed"] == 1


def test_a_bad_configuration_is_refused_and_the_old_one_kept(dps):
    before = dps.control("GET", "/config").json()
    r = dps.control(
        "PUT", "/config", json={"faults": {"rules": [{"kind": "503", "probability": 2}]}}
    )
    _assert_dps_error(r, 400, 400001)
    assert "probability" in r.json()["message"]
    assert dps.control("PUT", "/config", data=b"{not json").status_code == 400
    assert dps.control("GET", "/config").json() == before


def test_reset_wipes_the_instance_records(dps):
    r = dps.http.put(
        f"{dps.base}/enrollments/kept",
        params={"api-version": SERVICE_API},
        headers=dps.auth,
        json={"registrationId": "kept", "attestation": {"type": "symmetricKey"}},
        timeout=10,
    )
    assert r.status_code == 200
    assert dps.get("/enrollments/kept").status_code == 200
    assert dps.control("POST", "/reset").status_code == 204
    assert dps.get("/enrollments/kept").status_code == 404


# -- who may call the control routes -----------------------------------------------------------------
def _asgi(stack: Any, client: tuple[str, int], method: str, path: str) -> httpx.Response:
    app = stack.apps[f"dps:{stack.tenant.dps_instances[0].name}"]

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="https://dps") as c:
            return await c.request(method, path, json={} if method != "GET" else None)

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_emulator/config"),
        ("PUT", "/_emulator/config"),
        ("POST", "/_emulator/reset"),
        ("GET", "/_emulator/stats"),
        ("GET", "/_emulator/anything-else"),
    ],
)
def test_control_routes_refuse_callers_off_the_machine(dps, stack, method, path):
    r = _asgi(stack, ("10.0.0.5", 1234), method, path)
    assert r.status_code == 403
    assert r.json()["errorCode"] == 403001


def test_control_routes_answer_ipv6_loopback(dps, stack):
    assert _asgi(stack, ("::1", 1234), "GET", "/_emulator/stats").status_code == 200
