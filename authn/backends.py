"""The authentication backend: Entra claims in, Django user out; capabilities as perms."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest

from authn.permissions import Capability
from authn.roles import AppRole
from instances.models import DpsInstance

# What a portal admin may do beyond others: see everyone's bulk jobs, manage DPS instances.
PORTAL_ADMIN = "portal.admin"
AUDIT_VIEW = "audit.view"

# Portal-level permissions and the app roles that grant them.
APP_ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    PORTAL_ADMIN: frozenset({AppRole.ADMIN}),
    AUDIT_VIEW: frozenset({AppRole.ADMIN, AppRole.AUDITOR}),
}
_CAPABILITY_NAMES = frozenset(c.value for c in Capability)


def app_roles_of(user: Any) -> frozenset[str]:
    try:
        return frozenset(user.entra_identity.app_roles or [])
    except (ObjectDoesNotExist, AttributeError):
        return frozenset()


class EntraBackend(BaseBackend):
    """Authenticate from validated ID token claims; answer ``has_perm`` from RBAC and app roles.

    ``user.has_perm("enrollments.write", instance)`` asks ARM (through the capability cache)
    whether the user may write enrollments on that DPS instance.
    """

    def authenticate(
        self, request: HttpRequest | None, entra_claims: dict[str, Any] | None = None, **kw: Any
    ) -> Any:
        if not entra_claims:
            return None
        from authn.services import user_get_or_create_from_claims

        user = user_get_or_create_from_claims(entra_claims)
        return user if self.user_can_authenticate(user) else None

    def user_can_authenticate(self, user: Any) -> bool:
        return bool(getattr(user, "is_active", False))

    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user = User._default_manager.select_related("entra_identity").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not getattr(user_obj, "is_active", False) or not user_obj.is_authenticated:
            return False
        if perm in APP_ROLE_PERMISSIONS:
            return bool(app_roles_of(user_obj) & APP_ROLE_PERMISSIONS[perm])
        if perm in _CAPABILITY_NAMES and isinstance(obj, DpsInstance):
            from authn.capabilities import capabilities_resolve

            return perm in capabilities_resolve(user_obj, obj)
        return False
