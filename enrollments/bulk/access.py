"""How a job reaches DPS and learns its owner's capabilities, acting as the owner.

The backend is chosen by ``settings.BULK_ACCESS_BACKEND`` so tests and benchmarks can reach the
emulator with a shared access signature; production uses :class:`PortalAccess`, which asks the
token broker for the owner's DPS token inside the worker (never from the task message) and the
capability resolver for the owner's rights.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from enrollments.dps.types import DpsApi


class BulkAccess(Protocol):
    """A job's way to DPS."""

    def client(self, *, owner: Any, instance: Any) -> DpsApi:
        """Return a DPS client that acts as ``owner``; it must not retry by itself."""
        ...

    def capabilities(self, *, owner: Any, instance: Any) -> frozenset[str]:
        """Return ``owner``'s capability names on ``instance``.

        Raise ReauthRequired if the owner must sign in again, PermissionLookupFailed if the
        capabilities cannot be read now.
        """
        ...

    def check_signin(self, *, owner: Any, instance: Any) -> None:
        """Raise ReauthRequired unless a DPS token can be had for ``owner`` without them."""
        ...


class PortalAccess:
    """The real thing: the token broker (silent, then on-behalf-of) and the ARM resolver."""

    def client(self, *, owner: Any, instance: Any) -> DpsApi:
        from authn.msal_app import DPS_RESOURCE
        from authn.tokens import token_for_user
        from enrollments.clients import instance_host_guard
        from enrollments.dps.auth import bearer
        from enrollments.dps.client import DpsClient

        return DpsClient(
            instance.host,
            bearer(lambda: token_for_user(owner, DPS_RESOURCE)),
            ca_bundle=settings.AZURE_CA_BUNDLE or True,
            timeout=settings.HTTP_TIMEOUT_SECONDS,
            max_retries=0,
            host_guard=instance_host_guard(instance),
        )

    def capabilities(self, *, owner: Any, instance: Any) -> frozenset[str]:
        from authn.capabilities import capabilities_invalidate, capabilities_resolve
        from authn.exceptions import PermissionLookupFailed

        # A run re-reads ARM rather than trusting a cache filled before the job was queued.
        capabilities_invalidate(owner, instance)
        result = capabilities_resolve(owner, instance)
        if result.error:
            # Unknown is not "none": the job waits rather than failing as if refused.
            raise PermissionLookupFailed(result.error)
        return frozenset(c.value for c in result.capabilities)

    def check_signin(self, *, owner: Any, instance: Any) -> None:
        from authn.msal_app import DPS_RESOURCE
        from authn.tokens import token_for_user

        token_for_user(owner, DPS_RESOURCE)


@lru_cache(maxsize=4)
def _backend(path: str) -> BulkAccess:
    return import_string(path)()


def access() -> BulkAccess:
    """Return the configured access backend."""
    return _backend(
        getattr(settings, "BULK_ACCESS_BACKEND", "enrollments.bulk.access.PortalAccess")
    )
