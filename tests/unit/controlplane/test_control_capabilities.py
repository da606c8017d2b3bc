"""Control-plane capabilities from the ``actions`` of ARM permission blocks."""

from __future__ import annotations

from typing import Any

import pytest

from authn.capabilities import (
    ControlCapability,
    InstanceCapabilities,
    action_allowed,
    control_capabilities_from_permissions,
)
from authn.permissions import Capability

C = ControlCapability
ALL = frozenset(ControlCapability)
DATA_CONTRIBUTOR = {"actions": [], "dataActions": ["Microsoft.Devices/provisioningServices/*"]}
READER = {"actions": ["*/read"], "notActions": []}
OWNER = {"actions": ["*"]}
CONTRIBUTOR = {
    "actions": ["*"],
    "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write"],
}
CERT_READER = {"actions": ["Microsoft.Devices/provisioningServices/certificates/read"]}
CERT_MANAGER = {
    "actions": [
        "Microsoft.Devices/provisioningServices/read",
        "Microsoft.Devices/provisioningServices/certificates/*",
    ]
}


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([DATA_CONTRIBUTOR], frozenset()),
        ([READER], {C.INSTANCE_READ, C.CERTIFICATES_READ}),
        ([OWNER], ALL),
        ([CONTRIBUTOR], ALL),
        ([CERT_READER], {C.CERTIFICATES_READ}),
        ([CERT_MANAGER], ALL),
        ([DATA_CONTRIBUTOR, CERT_READER], {C.CERTIFICATES_READ}),
        (
            [{"actions": ["*"], "notActions": ["Microsoft.Devices/*/delete"]}],
            ALL - {C.CERTIFICATES_DELETE},
        ),
        # One of the two proof-of-possession actions is not enough to verify.
        (
            [{"actions": ["microsoft.devices/provisioningservices/certificates/verify/action"]}],
            frozenset(),
        ),
        ([{"actions": None, "notActions": None}, "junk"], frozenset()),
    ],
)
def test_control_capabilities(blocks: list[Any], expected: set[ControlCapability]) -> None:
    assert control_capabilities_from_permissions(blocks) == frozenset(expected)


def test_not_actions_subtract_only_inside_their_block() -> None:
    action = "Microsoft.Devices/provisioningServices/certificates/delete"
    blocks = [{"actions": ["*"], "notActions": ["*/delete"]}, CERT_MANAGER]
    assert action_allowed(blocks, action)
    assert not action_allowed(blocks[:1], action)


def test_data_actions_never_grant_control() -> None:
    assert not action_allowed(
        [{"dataActions": ["*"], "actions": []}], "Microsoft.Devices/provisioningServices/read"
    )


def test_instance_capabilities_answer_both_kinds() -> None:
    caps = InstanceCapabilities(
        "dps", frozenset({Capability.ENROLLMENTS_READ}), control=frozenset({C.CERTIFICATES_READ})
    )
    assert "enrollments.read" in caps
    assert "certificates.read" in caps
    assert "certificates.write" not in caps
    assert "nonsense" not in caps
    assert 42 not in caps
    # Iteration, length and ``missing`` stay about data capabilities, as before.
    assert list(caps) == [Capability.ENROLLMENTS_READ]
    assert len(caps) == 1
