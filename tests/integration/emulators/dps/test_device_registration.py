"""The DPS emulator's device registration API, seen through the service API afterwards.

A private emulator stack per module: these tests reset the instance between tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests

DEVICE_API = "2021-06-01"
SERVICE_API = "2021-10-01"


def _sas(resource: str, key_b64: str, key_name: str | None, ttl: int = 3600) -> str:
    """Sign like the SDKs do, independently of the emulator's own helpers."""
    se = str(int(time.time()) + ttl)
    encoded = urllib.parse.quote(resource, safe="")
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key_b64), f"{encoded}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    fields = {"sr": resource, "sig": sig, "se": se}
    if key_name:
        fields["skn"] = key_name
    return "SharedAccessSignature " + urllib.parse.urlencode(fields)


def _derive(group_key: str, registration_id: str) -> str:
    digest = hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def _key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


class Dps:
    """A thin client of one emulated instance: service calls as the owner, device calls."""

    def __init__(self, entry: dict[str, Any], ca: str) -> None:
        self.host = entry["host"]
        self.id_scope = entry["id_scope"]
        self.hubs = entry["iot_hubs"]
        parts = dict(p.split("=", 1) for p in entry["connection_string"].split(";"))
        self.policy, self.policy_key = parts["SharedAccessKeyName"], parts["SharedAccessKey"]
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = ca
        self.base = f"https://{self.host}"

    def service(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": _sas(self.host, self.policy_key, self.policy)}
        headers.update(kw.pop("headers", {}))
        return self.http.request(
            method,
            f"{self.base}{path}",
            params={"api-version": SERVICE_API},
            headers=headers,
            timeout=10,
            **kw,
        )

    def put_enrollment(self, registration_id: str, **fields: Any) -> dict[str, Any]:
        body = {
            "registrationId": registration_id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {}},
            **fields,
        }
        r = self.service("PUT", f"/enrollments/{registration_id}", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def put_group(self, group_id: str, **fields: Any) -> dict[str, Any]:
        body = {
            "enrollmentGroupId": group_id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {}},
            **fields,
        }
        r = self.service("PUT", f"/enrollmentGroups/{group_id}", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def register(
        self, registration_id: str, key: str, body: Any = None, api: str = DEVICE_API
    ) -> requests.Response:
        resource = f"{self.id_scope}/registrations/{registration_id}"
        return self.http.put(
            f"{self.base}/{resource}/register",
            params={"api-version": api},
            json={"registrationId": registration_id} if body is None else body,
            headers={"Authorization": _sas(resource, key, "registration")},
            timeout=10,
        )

    def operation(self, registration_id: str, key: str, operation_id: str) -> requests.Response:
        resource = f"{self.id_scope}/registrations/{registration_id}"
        return self.http.get(
            f"{self.base}/{resource}/operations/{operation_id}",
            params={"api-version": DEVICE_API},
            headers={"Authorization": _sas(resource, key, "registration")},
            timeout=10,
        )

    def provision(self, registration_id: str, key: str) -> dict[str, Any]:
        """Register and poll once; return the final operation status document."""
        r = self.register(registration_id, key)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "assigning"
        op = self.operation(registration_id, key, r.json()["operationId"])
        assert op.status_code == 200, op.text
        return op.json()

    def control(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.base}/_emulator{path}", timeout=10, **kw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from emulators.common.server import EmulatorStack

    s = EmulatorStack(tmp_path_factory.mktemp("dps-device")).start()
    yield s
    s.stop()


@pytest.fixture
def dps(stack: Any) -> Iterator[Dps]:
    endpoints = stack.endpoints()
    client = Dps(endpoints["dps"][0], endpoints["ca_cert"])
    assert client.control("POST", "/reset").status_code == 204
    yield client
    client.http.close()


# -- individual enrollments -------------------------------------------------------------------
def test_device_registers_against_an_individual_enrollment_and_the_service_api_sees_it(dps):
    enrollment = dps.put_enrollment("dev-ind-1", deviceId="my-device")
    key = enrollment["attestation"]["symmetricKey"]["primaryKey"]

    result = dps.provision("dev-ind-1", key)

    assert result["status"] == "assigned"
    state = result["registrationState"]
    assert state["registrationId"] == "dev-ind-1"
    assert state["assignedHub"] in dps.hubs
    assert state["deviceId"] == "my-device"
    assert state["substatus"] == "initialAssignment"
    for field in ("createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"):
        assert isinstance(state[field], str)
    r = dps.service("GET", "/registrations/dev-ind-1")
    assert r.status_code == 200
    assert r.json()["assignedHub"] == state["assignedHub"]
    assert r.json()["status"] == "assigned"
    assert r.json()["etag"] == state["etag"]


def test_the_secondary_key_works_too(dps):
    enrollment = dps.put_enrollment("dev-ind-2")
    key = enrollment["attestation"]["symmetricKey"]["secondaryKey"]
    assert dps.provision("dev-ind-2", key)["registrationState"]["deviceId"] == "dev-ind-2"


def test_a_wrong_key_gets_401_and_writes_no_record(dps):
    dps.put_enrollment("dev-ind-3")
    r = dps.register("dev-ind-3", _key())
    assert r.status_code == 401
    assert r.json()["errorCode"] == 401002
    assert r.headers["content-type"].startswith("application/json")
    assert dps.service("GET", "/registrations/dev-ind-3").status_code == 404


def test_a_token_for_another_registration_id_gets_401(dps):
    key = dps.put_enrollment("dev-ind-4")["attestation"]["symmetricKey"]["primaryKey"]
    dps.put_enrollment("dev-ind-5")
    resource = f"{dps.id_scope}/registrations/dev-ind-4"
    r = dps.http.put(
        f"{dps.base}/{dps.id_scope}/registrations/dev-ind-5/register",
        params={"api-version": DEVICE_API},
        json={"registrationId": "dev-ind-5"},
        headers={"Authorization": _sas(resource, key, "registration")},
        timeout=10,
    )
    assert r.status_code == 401


def test_an_expired_token_or_none_at_all_gets_401(dps):
    key = dps.put_enrollment("dev-ind-6")["attestation"]["symmetricKey"]["primaryKey"]
    resource = f"{dps.id_scope}/registrations/dev-ind-6"
    url = f"{dps.base}/{resource}/register"
    for headers in ({"Authorization": _sas(resource, key, "registration", ttl=-10)}, {}):
        r = dps.http.put(
            url,
            params={"api-version": DEVICE_API},
            json={"registrationId": "dev-ind-6"},
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 401


def test_an_unknown_device_gets_401(dps):
    assert dps.register("nobody-here", _key()).status_code == 401


def test_bad_requests_get_400(dps):
    key = dps.put_enrollment("dev-ind-7")["attestation"]["symmetricKey"]["primaryKey"]
    assert dps.register("dev-ind-7", key, body={"registrationId": "other"}).status_code == 400
    assert dps.register("dev-ind-7", key, body=["not", "an", "object"]).status_code == 400
    assert dps.register("dev-ind-7", key, api="2018-01-01").status_code == 400
    r = dps.register("dev-ind-7", key, api="")
    assert r.status_code == 400
    assert r.json()["errorCode"] == 400001


def test_earlier_device_api_versions_from_2019_are_accepted(dps):
    key = dps.put_enrollment("dev-ind-8")["attestation"]["symmetricKey"]["primaryKey"]
    assert dps.register("dev-ind-8", key, api="2019-03-31").status_code == 202


def test_a_disabled_enrollment_ends_in_status_disabled_without_a_hub(dps):
    key = dps.put_enrollment("dev-off", provisioningStatus="disabled")["attestation"][
        "symmetricKey"
    ]["primaryKey"]
    result = dps.provision("dev-off", key)
    assert result["status"] == "disabled"
    assert "assignedHub" not in result["registrationState"]
    assert dps.service("GET", "/registrations/dev-off").json()["status"] == "disabled"


def test_a_disabled_individual_enrollment_blocks_one_device_of_an_enabled_group(dps):
    group_key = dps.put_group("grp-block")["attestation"]["symmetricKey"]["primaryKey"]
    dps.put_enrollment("grp-block-dev", provisioningStatus="disabled")
    # The device still holds its group-derived key; the individual enrollment wins.
    r = dps.register("grp-block-dev", _derive(group_key, "grp-block-dev"))
    assert r.status_code == 401


def test_operation_lookup_of_an_unknown_or_foreign_operation_is_404(dps):
    key_a = dps.put_enrollment("dev-op-a")["attestation"]["symmetricKey"]["primaryKey"]
    key_b = dps.put_enrollment("dev-op-b")["attestation"]["symmetricKey"]["primaryKey"]
    op_a = dps.register("dev-op-a", key_a).json()["operationId"]
    assert dps.operation("dev-op-b", key_b, op_a).status_code == 404
    assert dps.operation("dev-op-a", key_a, "5.0.nothing").status_code == 404
    assert dps.operation("dev-op-a", key_b, op_a).status_code == 401


# -- enrollment groups -----------------------------------------------------------------------
def test_device_registers_against_a_group_with_its_derived_key(dps):
    group = dps.put_group("grp-sym", allocationPolicy="static", iotHubs=[dps.hubs[-1]])
    group_key = group["attestation"]["symmetricKey"]["primaryKey"]

    result = dps.provision("grp-dev-1", _derive(group_key, "grp-dev-1"))

    assert result["registrationState"]["assignedHub"] == dps.hubs[-1]
    assert result["registrationState"]["deviceId"] == "grp-dev-1"
    r = dps.service("POST", "/registrations/grp-sym/query")
    assert r.status_code == 200
    assert r.headers["x-ms-item-type"] == "DeviceRegistration"
    assert [(s["registrationId"], s["assignedHub"]) for s in r.json()] == [
        ("grp-dev-1", dps.hubs[-1])
    ]
    assert dps.service("GET", "/registrations/grp-dev-1").json()["assignedHub"] == dps.hubs[-1]


def test_the_group_key_itself_is_not_a_device_key(dps):
    group_key = dps.put_group("grp-raw")["attestation"]["symmetricKey"]["primaryKey"]
    assert dps.register("grp-dev-raw", group_key).status_code == 401


def test_a_device_joins_the_group_whose_key_derived_its_key(dps):
    key_a = dps.put_group("grp-a")["attestation"]["symmetricKey"]["primaryKey"]
    dps.put_group("grp-b")
    dps.provision("joins-a", _derive(key_a, "joins-a"))
    assert [
        s["registrationId"] for s in dps.service("POST", "/registrations/grp-a/query").json()
    ] == ["joins-a"]
    assert dps.service("POST", "/registrations/grp-b/query").json() == []


def test_hashed_allocation_spreads_devices_over_hubs_deterministically(dps):
    assert len(dps.hubs) >= 2, "the default tenant links two hubs to its first instance"
    group_key = dps.put_group("grp-hash", allocationPolicy="hashed")["attestation"]["symmetricKey"][
        "primaryKey"
    ]
    ids = [f"hash-dev-{i}" for i in range(16)]

    def assign() -> dict[str, str]:
        return {
            rid: dps.provision(rid, _derive(group_key, rid))["registrationState"]["assignedHub"]
            for rid in ids
        }

    first = assign()
    assert set(first.values()) == set(dps.hubs)
    for rid in ids:
        assert dps.service("DELETE", f"/registrations/{rid}").status_code == 204
    assert assign() == first


def test_static_allocation_puts_every_device_on_the_one_hub(dps):
    group_key = dps.put_group("grp-static", allocationPolicy="static", iotHubs=[dps.hubs[0]])[
        "attestation"
    ]["symmetricKey"]["primaryKey"]
    hubs = {
        dps.provision(f"st-{i}", _derive(group_key, f"st-{i}"))["registrationState"]["assignedHub"]
        for i in range(6)
    }
    assert hubs == {dps.hubs[0]}


def test_custom_allocation_fails_with_a_clear_message(dps):
    key = dps.put_enrollment(
        "dev-custom",
        allocationPolicy="custom",
        customAllocationDefinition={
            "webhookUrl": "https://127.0.0.1:9/x",
            "apiVersion": "2019-03-31",
        },
    )["attestation"]["symmetricKey"]["primaryKey"]
    result = dps.provision("dev-custom", key)
    assert result["status"] == "failed"
    assert "webhook" in result["registrationState"]["errorMessage"]
    assert isinstance(result["registrationState"]["errorCode"], int)


# -- reprovisioning --------------------------------------------------------------------------
def _move(dps: Dps, registration_id: str, key: str, policy: dict[str, bool] | None) -> dict:
    """Register on hub 0, move the enrollment to hub 1, register again."""
    enrollment = dps.put_enrollment(
        registration_id,
        attestation={
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": key, "secondaryKey": key},
        },
        allocationPolicy="static",
        iotHubs=[dps.hubs[0]],
        reprovisionPolicy=policy,
    )
    assert dps.provision(registration_id, key)["registrationState"]["assignedHub"] == dps.hubs[0]
    r = dps.service(
        "PUT",
        f"/enrollments/{registration_id}",
        json={**enrollment, "iotHubs": [dps.hubs[1]]},
        headers={"If-Match": enrollment["etag"]},
    )
    assert r.status_code == 200, r.text
    return dps.provision(registration_id, key)["registrationState"]


@pytest.mark.parametrize(
    ("policy", "hub_index", "substatus"),
    [
        ({"updateHubAssignment": True, "migrateDeviceData": True}, 1, "deviceDataMigrated"),
        ({"updateHubAssignment": True, "migrateDeviceData": False}, 1, "deviceDataReset"),
        ({"updateHubAssignment": False, "migrateDeviceData": True}, 0, "initialAssignment"),
    ],
)
def test_reregistration_follows_the_reprovision_policy(dps, policy, hub_index, substatus):
    state = _move(dps, "dev-move", _key(), policy)
    assert state["assignedHub"] == dps.hubs[hub_index]
    assert state["substatus"] == substatus


def test_reregistration_keeps_the_created_time_and_changes_the_etag(dps):
    key = dps.put_enrollment("dev-again")["attestation"]["symmetricKey"]["primaryKey"]
    first = dps.provision("dev-again", key)["registrationState"]
    second = dps.provision("dev-again", key)["registrationState"]
    assert second["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    assert second["etag"] != first["etag"]
    assert second["substatus"] == "reprovisionedToInitialAssignment"


# -- the control route for X.509 and TPM devices ------------------------------------------------
def test_control_route_creates_a_record_for_an_x509_group_device(dps):
    group = {
        "enrollmentGroupId": "grp-x509",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "my-root"}}},
    }
    assert dps.service("PUT", "/enrollmentGroups/grp-x509", json=group).status_code == 200
    r = dps.control(
        "POST",
        "/registrations",
        json={
            "registrationId": "x509-dev",
            "enrollmentGroupId": "grp-x509",
            "assignedHub": dps.hubs[1],
        },
    )
    assert r.status_code == 200, r.text
    listed = dps.service("POST", "/registrations/grp-x509/query").json()
    assert [(s["registrationId"], s["assignedHub"], s["status"]) for s in listed] == [
        ("x509-dev", dps.hubs[1], "assigned")
    ]


def test_control_route_allocates_when_no_hub_is_given_and_records_failures(dps):
    r = dps.service(
        "PUT",
        "/enrollments/tpm-dev",
        json={
            "registrationId": "tpm-dev",
            "attestation": {
                "type": "tpm",
                "tpm": {"endorsementKey": base64.b64encode(os.urandom(64)).decode()},
            },
            "allocationPolicy": "static",
            "iotHubs": [dps.hubs[1]],
        },
    )
    assert r.status_code == 200, r.text
    assert (
        dps.control("POST", "/registrations", json={"registrationId": "tpm-dev"}).json()[
            "assignedHub"
        ]
        == dps.hubs[1]
    )
    failed = dps.control(
        "POST",
        "/registrations",
        json={
            "registrationId": "tpm-dev",
            "status": "failed",
            "errorCode": 401002,
            "errorMessage": "bad EK",
        },
    ).json()
    assert (failed["status"], failed["errorMessage"]) == ("failed", "bad EK")
    assert "assignedHub" not in failed


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"registrationId": "no-such-enrollment"}, 404),
        ({"registrationId": "x", "enrollmentGroupId": "no-such-group"}, 404),
        ({"registrationId": "bad id!"}, 400),
        ({"registrationId": "x", "status": "happy"}, 400),
        ({"registrationId": "x", "errorCode": "E1"}, 400),
        (["x"], 400),
    ],
)
def test_control_route_rejects_bad_records(dps, body, status):
    assert dps.control("POST", "/registrations", json=body).status_code == status


def test_control_route_refuses_callers_off_the_machine(stack):
    name = stack.tenant.dps_instances[0].name
    transport = httpx.ASGITransport(app=stack.apps[f"dps:{name}"], client=("10.0.0.5", 1234))

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="https://dps") as client:
            return await client.post("/_emulator/registrations", json={"registrationId": "x"})

    r = asyncio.run(call())
    assert r.status_code == 403
    assert r.json()["errorCode"] == 403001
