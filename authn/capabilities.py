"""What a user may do on a DPS instance, from ARM, cached for a few minutes.

The cache is a hint for the UI and for early refusals: DPS enforces RBAC again on every
call, and a 403 from DPS drops the entry (:func:`capabilities_invalidate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from authn.arm import ArmClient, ArmError, ArmUnavailable
from authn.exceptions import TokenUnavailable
from authn.msal_app import ARM_RESOURCE
from authn.permissions import Capability, capabilities_describe, capabilities_from_permissions
from instances.hosts import DpsHostError, dps_host_arm_check
from instances.models import DpsInstance

log = logging.getLogger(__name__)

_REQUEST_CACHE_ATTR = "_authn_capabilities"

TokenProvider = Callable[[Any, str], str]


@dataclass(frozen=True)
class InstanceCapabilities:
    """The capabilities of one user on one instance; empty (fail closed) when ``error``."""

    instance: str
    capabilities: frozenset[Capability]
    error: str = ""
    # The error is an outage (ARM or Entra ID could not be reached), not an answer about rights.
    unreachable: bool = False

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        try:
            return Capability(item) in self.capabilities
        except ValueError:
            return False

    def __iter__(self) -> Iterator[Capability]:
        return iter(sorted(self.capabilities, key=list(Capability).index))

    def __len__(self) -> int:
        return len(self.capabilities)

    @property
    def granted(self) -> list[Capability]:
        return list(self)

    @property
    def missing(self) -> list[Capability]:
        return [c for c in Capability if c not in self.capabilities]

    @property
    def sentence(self) -> str:
        if self.error:
            return "Your permissions on this instance could not be read, so every action is hidden."
        return capabilities_describe(self.capabilities)


def _cache_key(user: Any, instance: DpsInstance) -> str:
    return f"authn:capabilities:v1:{user.pk}:{instance.pk}"


def _default_token_provider(user: Any, resource: str) -> str:
    from authn.tokens import token_for_user

    return token_for_user(user, resource)


def capabilities_resolve(
    user: Any,
    instance: DpsInstance,
    *,
    arm: ArmClient | None = None,
    token_provider: TokenProvider | None = None,
) -> InstanceCapabilities:
    """Return ``user``'s capabilities on ``instance`` (per request, then shared cache, then ARM).

    Raises :class:`~authn.exceptions.ReauthRequired` when the user must sign in again. Any
    other failure to read ARM yields no capabilities and an ``error`` for the banner.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return InstanceCapabilities(instance.name, frozenset())
    per_request: dict[int, InstanceCapabilities] | None = getattr(user, _REQUEST_CACHE_ATTR, None)
    if per_request is None:
        per_request = {}
        setattr(user, _REQUEST_CACHE_ATTR, per_request)
    if instance.pk in per_request:
        return per_request[instance.pk]
    key = _cache_key(user, instance)
    names = cache.get(key)
    if names is not None:
        result = InstanceCapabilities(instance.name, frozenset(Capability(n) for n in names))
    else:
        result = _resolve_from_arm(user, instance, arm, token_provider or _default_token_provider)
        if not result.error:
            cache.set(
                key,
                sorted(c.value for c in result.capabilities),
                settings.PERMISSIONS_CACHE_SECONDS,
            )
    per_request[instance.pk] = result
    return result


def _resolve_from_arm(
    user: Any, instance: DpsInstance, arm: ArmClient | None, token_provider: TokenProvider
) -> InstanceCapabilities:
    arm = arm or ArmClient()
    try:
        token = token_provider(user, ARM_RESOURCE)
        blocks = arm.permissions_for(instance.resource_id, token)
    except (TokenUnavailable, ArmError) as exc:
        # Fail closed: no capability; not cached, so the next page view tries again.
        log.warning("permissions of user %s on %s unavailable: %s", user.pk, instance.name, exc)
        if isinstance(exc, ArmUnavailable):
            answer = f"it answered {exc.status}" if exc.status else "no answer"
            return InstanceCapabilities(
                instance.name,
                frozenset(),
                error=f"Azure Resource Manager could not be reached ({answer}).",
                unreachable=True,
            )
        return InstanceCapabilities(
            instance.name,
            frozenset(),
            error=str(exc),
            unreachable=isinstance(exc, TokenUnavailable) and not exc.error,
        )
    try:
        # With the user's ARM token at hand, tie the recorded host to the resource id (once
        # per resource id and hour; the import command registers without a user).
        dps_host_arm_check(instance.host, instance.resource_id, token, arm=arm)
    except DpsHostError as exc:
        log.error("DPS instance %s refused: %s", instance.name, exc)
        return InstanceCapabilities(instance.name, frozenset(), error=str(exc))
    return InstanceCapabilities(instance.name, capabilities_from_permissions(blocks))


def capabilities_invalidate(user: Any, instance: DpsInstance) -> None:
    """Forget ``user``'s cached capabilities on ``instance`` (call it on a DPS 403)."""
    cache.delete(_cache_key(user, instance))
    getattr(user, _REQUEST_CACHE_ATTR, {}).pop(instance.pk, None)


def capabilities_invalidate_all(user: Any) -> None:
    """Forget ``user``'s cached capabilities on every instance."""
    keys = [_cache_key(user, i) for i in DpsInstance.objects.only("pk")]
    if keys:
        cache.delete_many(keys)
    if getattr(user, _REQUEST_CACHE_ATTR, None) is not None:
        setattr(user, _REQUEST_CACHE_ATTR, {})
