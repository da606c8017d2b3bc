"""Template tags: ``{% can "enrollments.write" instance as allowed %}``."""

from __future__ import annotations

from typing import Any

from django import template

from authn.exceptions import AuthnError

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context: template.Context, capability: str, instance: Any = None) -> bool:
    """Return whether the current user has ``capability`` (on ``instance`` for DPS actions).

    Fails closed: any error while resolving permissions reads as "no".
    """
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if user is None or not user.is_authenticated:
        return False
    try:
        return bool(user.has_perm(capability, instance))
    except AuthnError:
        return False
