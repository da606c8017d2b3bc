"""The Entra app roles the portal defines (its app registration's ``appRoles``)."""

from __future__ import annotations

from enum import StrEnum


class AppRole(StrEnum):
    """An app role, as it appears in the ``roles`` claim of the ID token."""

    ADMIN = "Portal.Admin"
    AUDITOR = "Portal.Auditor"


#: Every role the portal knows; others in the token are ignored.
KNOWN_APP_ROLES: tuple[str, ...] = tuple(AppRole)
