"""The pure RBAC resolver: Azure's matching semantics over ARM permission blocks."""

from __future__ import annotations

import pytest

from authn.permissions import (
    ALL_CAPABILITIES,
    Capability,
    action_matches,
    capabilities_describe,
    capabilities_from_permissions,
    data_action_allowed,
)

C = Capability
READS = frozenset({C.ENROLLMENTS_READ, C.ENROLLMENTGROUPS_READ, C.REGISTRATIONS_READ})
P = "Microsoft.Devices/provisioningServices"


def block(data=(), not_data=(), actions=(), not_actions=()):
    return {
        "actions": list(actions),
        "notActions": list(not_actions),
        "dataActions": list(data),
        "notDataActions": list(not_data),
    }


# Role definitions exactly as reference/identity §4.1 and the default tenant file give them.
DATA_CONTRIBUTOR = [block([f"{P}/*"])]
DATA_READER = [block([f"{P}/*/read"])]
KEY_READER = [block([f"{P}/*/read", f"{P}/attestationmechanism/details/action"])]
OPERATOR_NO_DELETE = [block([f"{P}/*"], [f"{P}/*/delete", f"{P}/attestationmechanism/*"])]
OWNER = [block(actions=["*"])]
CONTRIBUTOR = [block(actions=["*"], not_actions=["Microsoft.Authorization/*/Delete"])]
READER = [block(actions=["*/read"])]


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        (DATA_CONTRIBUTOR, ALL_CAPABILITIES),
        (DATA_READER, READS),
        (KEY_READER, READS | {C.ATTESTATION_REVEAL}),
        (
            OPERATOR_NO_DELETE,
            READS | {C.ENROLLMENTS_WRITE, C.ENROLLMENTGROUPS_WRITE},
        ),
        (OWNER, frozenset()),
        (CONTRIBUTOR, frozenset()),
        (READER, frozenset()),
        ([], frozenset()),
        (OPERATOR_NO_DELETE + READER, READS | {C.ENROLLMENTS_WRITE, C.ENROLLMENTGROUPS_WRITE}),
        # Union across blocks: what one role's notDataActions removes, another grants.
        (
            OPERATOR_NO_DELETE + KEY_READER,
            READS | {C.ENROLLMENTS_WRITE, C.ENROLLMENTGROUPS_WRITE, C.ATTESTATION_REVEAL},
        ),
        (DATA_READER + DATA_CONTRIBUTOR, ALL_CAPABILITIES),
        (OWNER + DATA_READER, READS),
    ],
    ids=[
        "data-contributor",
        "data-reader",
        "key-reader",
        "operator-no-delete",
        "owner",
        "contributor",
        "reader",
        "nothing",
        "operator+reader",
        "operator+key-reader",
        "reader+contributor",
        "owner+data-reader",
    ],
)
def test_roles(blocks, expected):
    """Built-in and custom roles resolve to exactly their capabilities."""
    assert capabilities_from_permissions(blocks) == expected


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", f"{P}/enrollments/read", True),
        (f"{P}/*", f"{P}/enrollments/read", True),
        (f"{P}/*/read", f"{P}/enrollmentGroups/read", True),
        (f"{P}/*/read", f"{P}/attestationmechanism/details/action", False),
        ("Microsoft.Devices/*/enrollments/*", f"{P}/enrollments/write", True),
        ("Microsoft.Devices/*/enrollments/*", f"{P}/enrollmentGroups/write", False),
        ("*/delete", f"{P}/registrationStates/delete", True),
        ("*/Delete", f"{P}/registrationStates/delete", True),  # case-insensitive
        (f"{P.upper()}/ENROLLMENTS/READ", f"{P}/enrollments/read", True),
        (f"{P}/enrollment*", f"{P}/enrollmentGroups/read", True),
        (f"{P}/enrollments", f"{P}/enrollments/read", False),  # no implicit prefix
        (f"{P}/enrollments/read/", f"{P}/enrollments/read", False),
        (
            "Microsoft.Devices/provisioningServices/*/details/*",
            f"{P}/attestationmechanism/details/action",
            True,
        ),
        ("*s/*/r*d", f"{P}/enrollments/read", True),  # several wildcards
        ("Microsoft.Devices/IotHubs/*", f"{P}/enrollments/read", False),
        (
            "Microsoft.Devices/provisioningServices.*",
            f"{P}/enrollments/read",
            False,
        ),  # dot is literal
    ],
)
def test_wildcards_anywhere_and_case(pattern, action, expected):
    """``*`` matches any run of characters including ``/``, at any position; case is ignored."""
    assert action_matches(pattern, action) is expected


def test_not_data_actions_subtract_within_the_block_only():
    blocks = [block([f"{P}/*"], [f"{P}/enrollments/*"]), block([f"{P}/enrollments/read"])]
    caps = capabilities_from_permissions(blocks)
    assert C.ENROLLMENTS_READ in caps  # granted back by the second block
    assert C.ENROLLMENTS_WRITE not in caps
    assert C.ENROLLMENTS_DELETE not in caps
    assert C.ENROLLMENTGROUPS_DELETE in caps


def test_wildcard_in_not_data_actions_at_any_segment():
    caps = capabilities_from_permissions([block([f"{P}/*"], ["*/write", "*States/*"])])
    assert caps == frozenset(
        {
            C.ENROLLMENTS_READ,
            C.ENROLLMENTS_DELETE,
            C.ENROLLMENTGROUPS_READ,
            C.ENROLLMENTGROUPS_DELETE,
            C.ATTESTATION_REVEAL,
        }
    )


def test_control_plane_actions_never_grant_data_actions():
    assert not data_action_allowed([block(actions=[f"{P}/*"])], f"{P}/enrollments/read")


def test_malformed_blocks_grant_nothing():
    """Missing lists, nulls, a lone string and non-dict entries are tolerated, never widened."""
    blocks = [{"dataActions": None}, "junk", {"dataActions": f"{P}/enrollments/read"}, {}]
    assert capabilities_from_permissions(blocks) == frozenset({C.ENROLLMENTS_READ})


def test_each_capability_has_a_data_action_testid_and_sentence():
    assert len(Capability) == 9
    assert {c.testid for c in Capability} == {
        "enrollments-read",
        "enrollments-write",
        "enrollments-delete",
        "enrollmentgroups-read",
        "enrollmentgroups-write",
        "enrollmentgroups-delete",
        "registrationstates-read",
        "registrationstates-delete",
        "attestationmechanism-details-action",
    }
    assert all(c.data_action.startswith(P + "/") and c.sentence.endswith(".") for c in Capability)


def test_matches_the_emulators_rbac_on_every_combination_of_one_block():
    """Cross-check against emulators.common.rbac on many generated patterns."""
    from emulators.common.rbac import DPS_DATA_ACTIONS
    from emulators.common.rbac import data_action_allowed as reference

    patterns = [
        "*",
        f"{P}/*",
        "*/read",
        "*/delete",
        "*/action",
        f"{P}/enrollments/*",
        f"{P}/enrollmentgroups/*",
        f"{P}/*/details/*",
        "microsoft.devices/*",
    ]
    for grant in patterns:
        for deny in ["", *patterns]:
            blocks = [block([grant], [deny] if deny else [])]
            for action in DPS_DATA_ACTIONS:
                assert data_action_allowed(blocks, action) is reference(blocks, action), (
                    grant,
                    deny,
                    action,
                )


@pytest.mark.parametrize(
    ("caps", "text"),
    [
        (
            READS,
            "You can read enrollments, enrollment groups and registration records. "
            "You cannot change or delete them, or see keys.",
        ),
        (
            ALL_CAPABILITIES,
            "You can do everything here: read, create, change and delete enrollments, "
            "enrollment groups and registration records, and see attestation keys.",
        ),
        (frozenset(), "You have no access to this DPS instance."),
        (
            READS | {C.ATTESTATION_REVEAL},
            "You can read individual enrollments, enrollment groups and registration records, "
            "and see attestation keys. You cannot create or change individual enrollments or "
            "enrollment groups, or delete individual enrollments, enrollment groups or "
            "registration records.",
        ),
        (
            READS | {C.ENROLLMENTS_WRITE, C.ENROLLMENTGROUPS_WRITE},
            "You can read individual enrollments, enrollment groups and registration records, "
            "and create or change individual enrollments and enrollment groups. You cannot delete "
            "individual enrollments, enrollment groups or registration records, or see "
            "attestation keys.",
        ),
        (
            frozenset({C.ENROLLMENTS_READ, C.ATTESTATION_REVEAL}),
            "You can read individual enrollments and see attestation keys. You cannot read "
            "enrollment groups or registration records; create or change individual enrollments "
            "or enrollment groups; or delete individual enrollments, enrollment groups or "
            "registration records.",
        ),
    ],
    ids=["reader", "contributor", "none", "key-reader", "operator", "mixed"],
)
def test_capabilities_in_words(caps, text):
    assert capabilities_describe(caps) == text
