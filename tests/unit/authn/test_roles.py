"""authn.roles and audit's target types: the constants each defined once."""

from __future__ import annotations

from audit.forms import KNOWN_TARGET_TYPES
from audit.models import AuditTargetType
from authn.roles import KNOWN_APP_ROLES, AppRole


def test_app_roles_are_the_app_registrations_role_values() -> None:
    assert KNOWN_APP_ROLES == ("Portal.Admin", "Portal.Auditor")
    assert AppRole.ADMIN in ["Portal.Admin"]  # compares with the token's plain strings


def test_the_audit_filter_offers_every_target_type_once() -> None:
    assert KNOWN_TARGET_TYPES == tuple(AuditTargetType.values)
    assert len(set(KNOWN_TARGET_TYPES)) == len(KNOWN_TARGET_TYPES) == 7


def test_dps_api_version_is_defined_once() -> None:
    from enrollments import validation
    from enrollments.dps import client

    assert validation.API_VERSION is client.API_VERSION == "2021-10-01"
