"""Class-based-view counterparts of :mod:`authn.decorators`."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from authn.decorators import app_role_required, capability_required


class CapabilityRequiredMixin:
    """Require ``required_capability`` on the instance named by the URL kwarg ``instance``."""

    required_capability: str = ""
    instance_url_kwarg: str = "instance"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not self.required_capability:
            raise NotImplementedError("set required_capability")
        check = capability_required(
            self.required_capability, instance_kwarg=self.instance_url_kwarg
        )
        return check(super().dispatch)(request, *args, **kwargs)  # type: ignore[misc]


class AppRoleRequiredMixin:
    """Require one of ``required_roles`` (Entra app roles)."""

    required_roles: tuple[str, ...] = ()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return app_role_required(*self.required_roles)(super().dispatch)(request, *args, **kwargs)  # type: ignore[misc]
