"""What a user may do on a DPS instance, from ARM, cached for a few minutes.

Data-plane capabilities (:class:`~authn.permissions.Capability`) come from the ``dataActions``
of the user's role blocks, control-plane ones (:class:`ControlCapability`: the DPS resource
and its CA certificates, served by ARM) from their ``actions``; one permissions call gives both.

The cache is a hint for the UI and for early refusals: DPS enforces RBAC again on every
call, and a 403 from DPS drops the entry (:func:`capabilities_invalidate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.cache import cache

from authn.arm import ArmClient, ArmError, ArmUnavailable
from authn.exceptions import TokenUnavailable
from authn.msal_app import ARM_RESOURCE
from authn.permissions import (
    Capability,
    action_matches,
    capabilities_describe,
    capabilities_from_permissions,
)
from instances.hosts import DpsHostError, dps_host_arm_check
from instances.models import DpsInstance

log = logging.getLogger(__name__)

_REQUEST_CACHE_ATTR = "_authn_capabilities"

TokenProvider = Callable[[Any, str], str]

_CONTROL_PREFIX = "Microsoft.Devices/provisioningServices/"


class ControlCapability(StrEnum):
    """What the portal lets a user do on the ARM side of one DPS instance."""

    INSTANCE_READ = "instance.read"
    CERTIFICATES_READ = "certificates.read"
    CERTIFICATES_WRITE = "certificates.write"
    CERTIFICATES_DELETE = "certificates.delete"
    CERTIFICATES_VERIFY = "certificates.verify"

    @property
    def actions(self) -> tuple[str, ...]:
        """Return the ARM actions the capability needs (all of them)."""
        return CONTROL_ACTIONS[self]

    @property
    def sentence(self) -> str:
        return CONTROL_SENTENCES[self]


CONTROL_ACTIONS: Mapping[ControlCapability, tuple[str, ...]] = {
    ControlCapability.INSTANCE_READ: (_CONTROL_PREFIX + "read",),
    ControlCapability.CERTIFICATES_READ: (_CONTROL_PREFIX + "certificates/read",),
    ControlCapability.CERTIFICATES_WRITE: (_CONTROL_PREFIX + "certificates/write",),
    ControlCapability.CERTIFICATES_DELETE: (_CONTROL_PREFIX + "certificates/delete",),
    # Proof of possession is two calls; a role granting one of them is of no use alone.
    ControlCapability.CERTIFICATES_VERIFY: (
        _CONTROL_PREFIX + "certificates/generateVerificationCode/action",
        _CONTROL_PREFIX + "certificates/verify/action",
    ),
}

CONTROL_SENTENCES: Mapping[ControlCapability, str] = {
    ControlCapability.INSTANCE_READ: "Read the DPS resource, such as its linked IoT hubs.",
    ControlCapability.CERTIFICATES_READ: "List the instance's CA certificates.",
    ControlCapability.CERTIFICATES_WRITE: "Upload CA certificates.",
    ControlCapability.CERTIFICATES_DELETE: "Delete CA certificates.",
    ControlCapability.CERTIFICATES_VERIFY: "Prove possession of a CA certificate's private key.",
}


_DATA_NAMES = frozenset(c.value for c in Capability)
_CONTROL_NAMES = frozenset(c.value for c in ControlCapability)


def action_allowed(blocks: Iterable[Mapping[str, Any]], action: str) -> bool:
    """Decide one control-plane action: ``actions`` minus ``notActions``, blocks unioned."""
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        granted = [p for p in block.get("actions") or [] if isinstance(p, str)]
        removed = [p for p in block.get("notActions") or [] if isinstance(p, str)]
        if any(action_matches(p, action) for p in granted) and not any(
            action_matches(p, action) for p in removed
        ):
            return True
    return False


def control_capabilities_from_permissions(
    blocks: Iterable[Mapping[str, Any]],
) -> frozenset[ControlCapability]:
    """Return the control-plane capabilities the permission blocks grant (deny by default)."""
    blocks = list(blocks)
    return frozenset(
        c for c in ControlCapability if all(action_allowed(blocks, a) for a in c.actions)
    )


@dataclass(frozen=True)
class InstanceCapabilities:
    """The capabilities of one user on one instance; empty (fail closed) when ``error``."""

    instance: str
    capabilities: frozenset[Capability]
    error: str = ""
    # The error is an outage (ARM or Entra ID could not be reached), not an answer about rights.
    unreachable: bool = False
    # Control-plane capabilities (from ``actions``); iteration and ``missing`` stay data-only.
    control: frozenset[ControlCapability] = frozenset()

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        if item in _DATA_NAMES:
            return Capability(item) in self.capabilities
        if item in _CONTROL_NAMES:
            return ControlCapability(item) in self.control
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
        result = _from_names(instance, names)
    else:
        result = _resolve_from_arm(user, instance, arm, token_provider or _default_token_provider)
        if not result.error:
            cache.set(
                key,
                sorted([c.value for c in result.capabilities] + [c.value for c in result.control]),
                settings.PERMISSIONS_CACHE_SECONDS,
            )
    per_request[instance.pk] = result
    return result


def _from_names(instance: DpsInstance, names: Iterable[str]) -> InstanceCapabilities:
    """Rebuild a cached answer: one list of names holds both kinds of capability."""
    names = list(names)
    return InstanceCapabilities(
        instance.name,
        frozenset(Capability(n) for n in names if n in _DATA_NAMES),
        control=frozenset(ControlCapability(n) for n in names if n in _CONTROL_NAMES),
    )


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
    return InstanceCapabilities(
        instance.name,
        capabilities_from_permissions(blocks),
        control=control_capabilities_from_permissions(blocks),
    )


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
