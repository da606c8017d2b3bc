"""from_json keeps nothing the caller can still change: containers are copied, scalars shared."""

from __future__ import annotations

from typing import Any

from enrollments.dps.types import IndividualEnrollment


def _body() -> dict[str, Any]:
    return {
        "registrationId": "r-1",
        "deviceId": "d-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        "iotHubs": ["hub-a.azure-devices.net"],
        "provisioningStatus": "enabled",
        "capabilities": {"iotEdge": False},
        "initialTwin": {"tags": {"site": {"floor": 1}}, "properties": {"desired": {}}},
        "optionalDeviceInformation": {"a": [1, 2]},
        "futureField": {"nested": ["x"]},
        "etag": "AAAA",
    }


def test_changing_the_json_afterwards_changes_no_model() -> None:
    body = _body()
    model = IndividualEnrollment.from_json(body)
    before = model.to_json()
    body["iotHubs"].append("hub-b")
    body["initialTwin"]["tags"]["site"]["floor"] = 2
    body["optionalDeviceInformation"]["a"].append(3)
    body["futureField"]["nested"].append("y")
    body["registrationId"] = "changed"
    assert model.to_json() == before
    assert model.iot_hubs == ["hub-a.azure-devices.net"]
    assert model.extra == {"futureField": {"nested": ["x"]}}


def test_scalars_keep_their_values_and_types() -> None:
    model = IndividualEnrollment.from_json(_body())
    assert model.registration_id == "r-1"
    assert model.etag == "AAAA"
    assert model.to_json() == _body()
