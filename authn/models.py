"""Entra identities and their encrypted token caches."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EntraIdentity(models.Model):
    """The Entra ID account behind a Django user.

    Keyed on (``tenant_id``, ``object_id``), never on the UPN, which can change. Display name,
    UPN and app roles are refreshed from the ID token at every sign-in.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entra_identity"
    )
    tenant_id = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    upn = models.CharField("user principal name", max_length=255, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    app_roles = models.JSONField(default=list, blank=True)
    last_signin = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("tenant_id", "object_id"), name="authn_entra_identity_unique"
            )
        ]

    def __str__(self) -> str:
        return self.upn or self.object_id

    @property
    def home_account_id(self) -> str:
        """Return MSAL's account key, ``<oid>.<tid>``."""
        return f"{self.object_id}.{self.tenant_id}"

    def has_app_role(self, role: str) -> bool:
        return role in (self.app_roles or [])


class UserTokenCache(models.Model):
    """One user's MSAL token caches, Fernet-encrypted with ``TOKEN_CACHE_KEYS``.

    Holds refresh and access tokens: never exposed outside :mod:`authn.tokens`. ``version``
    is a new random number at every write; a writer updates the row only if it still holds
    the version it read, so a token refresh that finishes after a sign-out (row deleted) or
    after a newer sign-in (version moved on) changes nothing. Only a sign-in creates the row.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_cache"
    )
    blob = models.BinaryField()
    version = models.PositiveBigIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"token cache of user {self.user_id}"
