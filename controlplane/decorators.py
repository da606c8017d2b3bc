"""Require a control-plane capability, like authn's ``capability_required`` does for data ones."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from authn.capabilities import ControlCapability, capabilities_resolve
from authn.decorators import deny, instance_refusal, permissions_unknown
from instances.models import DpsInstance

View = Callable[..., HttpResponse]


def control_capability_required(capability: ControlCapability) -> Callable[[View], View]:
    """Refuse with 403 and a ``denied`` audit event unless the user's roles grant ``capability``.

    The instance is passed to the view as ``request.dps_instance``.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            instance = get_object_or_404(DpsInstance, name=kwargs["instance"], enabled=True)
            request.dps_instance = instance  # type: ignore[attr-defined]
            refusal = instance_refusal(request, instance)
            if refusal is not None:
                return refusal
            if capability.value not in capabilities_resolve(request.user, instance):
                unknown = permissions_unknown(request, instance)
                if unknown is not None:
                    return unknown
                return deny(
                    request,
                    reason=f"Your Azure role on {instance.name} does not allow this: "
                    f"{capability.sentence[0].lower()}{capability.sentence[1:]} It needs the ARM "
                    f"action {' and '.join(capability.actions)}.",
                    required=capability.value,
                    instance=instance.name,
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
