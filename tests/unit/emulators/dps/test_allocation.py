"""Hub allocation of registering devices: policies, candidate hubs and reprovisioning."""

from __future__ import annotations

from collections import Counter

import pytest

from emulators.dps.allocation import (
    ERROR_CUSTOM_UNSUPPORTED,
    ERROR_NO_HUB,
    Hub,
    Previous,
    allocate,
    candidate_hubs,
    choose_hub,
    hashed_index,
)

WEU = Hub("hub-weu.azure-devices.net", "westeurope")
NEU = Hub("hub-neu.azure-devices.net", "northeurope")
EUS = Hub("hub-eus.azure-devices.net", "eastus")
LINKED = [WEU, NEU, EUS]


def test_hashed_index_is_pinned_so_devices_keep_their_hub_across_releases():
    """A change of hash would move every device; these values must never change."""
    assert [hashed_index(f"device-{i:03d}", 3) for i in range(8)] == [
        hashed_index(f"DEVICE-{i:03d}", 3) for i in range(8)
    ]
    assert [hashed_index(f"device-{i:03d}", 3) for i in range(3)] == [0, 1, 2]
    assert hashed_index("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", 2) == 0


def test_hashed_spreads_devices_over_every_hub():
    hubs = Counter(
        choose_hub("hashed", f"device-{i}", LINKED, "westeurope").hub for i in range(300)
    )
    assert set(hubs) == {WEU.name, NEU.name, EUS.name}
    assert all(60 <= n <= 140 for n in hubs.values()), hubs


def test_hashed_is_the_default_policy():
    assert (
        choose_hub(None, "device-7", LINKED, "westeurope").hub
        == choose_hub("hashed", "device-7", LINKED, "westeurope").hub
    )


def test_static_takes_the_single_configured_hub():
    enrollment = {"allocationPolicy": "static", "iotHubs": [NEU.name]}
    for i in range(10):
        result = allocate(
            registration_id=f"d{i}", enrollment=enrollment, linked=LINKED, instance_location="x"
        )
        assert result.hub == NEU.name
        assert result.substatus == "initialAssignment"


def test_static_honours_the_legacy_iot_hub_host_name():
    enrollment = {"allocationPolicy": "static", "iotHubHostName": EUS.name}
    assert allocate(
        registration_id="d", enrollment=enrollment, linked=LINKED, instance_location="x"
    ).hub == (EUS.name)


def test_geo_latency_prefers_a_hub_in_the_instance_region():
    assert choose_hub("geoLatency", "d", LINKED, "North Europe").hub == NEU.name
    assert choose_hub("geoLatency", "d", LINKED, "japaneast").hub == WEU.name


def test_custom_fails_with_a_message_instead_of_calling_a_webhook():
    result = allocate(
        registration_id="d",
        enrollment={"allocationPolicy": "custom", "customAllocationDefinition": {}},
        linked=LINKED,
        instance_location="westeurope",
    )
    assert result.status == "failed"
    assert result.error_code == ERROR_CUSTOM_UNSUPPORTED
    assert "webhook" in (result.error_message or "")


def test_no_hub_at_all_fails():
    result = choose_hub("hashed", "d", [], "westeurope")
    assert result.status == "failed"
    assert result.error_code == ERROR_NO_HUB


def test_unknown_policy_fails():
    assert choose_hub("roundRobin", "d", LINKED, "westeurope").status == "failed"


def test_candidate_hubs_are_the_enrollment_list_in_its_order_else_every_linked_hub():
    assert candidate_hubs({"iotHubs": [EUS.name, WEU.name.upper()]}, LINKED) == [EUS, WEU]
    assert candidate_hubs({"iotHubs": []}, LINKED) == LINKED
    assert candidate_hubs({}, LINKED) == LINKED


@pytest.mark.parametrize(
    ("policy", "expected_substatus"),
    [
        ({"updateHubAssignment": True, "migrateDeviceData": True}, "deviceDataMigrated"),
        ({"updateHubAssignment": True, "migrateDeviceData": False}, "deviceDataReset"),
        (None, "deviceDataMigrated"),
    ],
)
def test_reregistration_on_another_hub_reports_migration_or_reset(policy, expected_substatus):
    enrollment = {"allocationPolicy": "static", "iotHubs": [NEU.name], "reprovisionPolicy": policy}
    result = allocate(
        registration_id="d",
        enrollment=enrollment,
        linked=LINKED,
        instance_location="westeurope",
        previous=Previous(WEU.name, "initialAssignment"),
    )
    assert result.hub == NEU.name
    assert result.substatus == expected_substatus


def test_reregistration_on_the_same_hub_is_reprovisioned_to_initial_assignment():
    enrollment = {"allocationPolicy": "static", "iotHubs": [WEU.name]}
    result = allocate(
        registration_id="d",
        enrollment=enrollment,
        linked=LINKED,
        instance_location="westeurope",
        previous=Previous(WEU.name, "initialAssignment"),
    )
    assert (result.hub, result.substatus) == (WEU.name, "reprovisionedToInitialAssignment")


def test_update_hub_assignment_false_keeps_the_device_on_its_hub():
    enrollment = {
        "allocationPolicy": "static",
        "iotHubs": [NEU.name],
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": True},
    }
    result = allocate(
        registration_id="d",
        enrollment=enrollment,
        linked=LINKED,
        instance_location="westeurope",
        previous=Previous(WEU.name, "deviceDataMigrated"),
    )
    assert (result.hub, result.substatus) == (WEU.name, "deviceDataMigrated")


def test_update_hub_assignment_false_still_assigns_a_first_registration():
    enrollment = {
        "allocationPolicy": "static",
        "iotHubs": [NEU.name],
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": False},
    }
    result = allocate(
        registration_id="d", enrollment=enrollment, linked=LINKED, instance_location="westeurope"
    )
    assert (result.hub, result.substatus) == (NEU.name, "initialAssignment")
