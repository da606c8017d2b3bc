"""View decorators that enforce capabilities and app roles on the server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from authn.backends import APP_ROLE_PERMISSIONS, app_roles_of
from authn.capabilities import capabilities_resolve
from authn.permissions import Capability
from authn.request import PortalRequest
from instances.hosts import DpsHostError, dps_host_guard
from instances.models import DpsInstance

View = Callable[..., HttpResponseBase]

log = logging.getLogger(__name__)


def deny(request: HttpRequest, *, reason: str, required: str, instance: str = "") -> HttpResponse:
    """Answer 403 with the explanation page and record a ``denied`` audit event."""
    audit_record(
        actor=request.user,
        action=AuditAction.DENIED,
        outcome=AuditOutcome.DENIED,
        target_type="view",
        target_id=request.path[:255],
        dps_instance=instance,
        message=f"missing {required} for {request.method} {request.path}",
    )
    return render(
        request,
        "403.html",
        {"reason": reason, "required": required, "instance": instance},
        status=403,
    )


def instance_refusal(request: HttpRequest, instance: DpsInstance) -> HttpResponse | None:
    """Return the refusal page if no DPS token may be sent to ``instance``'s host, else None.

    The user's capabilities are resolved first, so that ARM (with the user's token) has had
    the chance to tell the instance's service host.
    """
    capabilities_resolve(request.user, instance)
    try:
        dps_host_guard(instance.host, instance.resource_id)
    except DpsHostError as exc:
        log.error("DPS instance %s refused (%s): %s", instance.name, exc.rule, exc)
        return render(
            request,
            "authn/instance_refused.html",
            {"instance": instance, "message": str(exc)},
            status=503,
        )
    return None


def permissions_unknown(request: HttpRequest, instance: DpsInstance) -> HttpResponse | None:
    """Answer 503 if the user's rights on ``instance`` could not be read; else None.

    A lookup that failed (ARM or Entra ID unreachable, an answer ARM should not give) says
    nothing about the user's role: the page says what failed, and no ``denied`` event is
    recorded, since nothing was refused.
    """
    from authn.capabilities import capabilities_resolve

    caps = capabilities_resolve(request.user, instance)
    if not caps.error:
        return None
    response = render(
        request,
        "authn/permissions_unavailable.html",
        {"instance": instance, "caps": caps},
        status=503,
    )
    response["Retry-After"] = "30"
    return response


def instance_access_required(
    allowed: Callable[[HttpRequest, DpsInstance], bool],
    *,
    required: str,
    reason: Callable[[DpsInstance], str],
    instance_kwarg: str = "instance",
) -> Callable[[View], View]:
    """Guard a view of the DPS instance named by the URL kwarg ``instance_kwarg``.

    Anonymous users are sent to sign in; an instance whose host is refused gets its page; when
    ``allowed`` says no, rights that could not be read give a 503 page and no event, and otherwise
    the 403 page with ``reason`` and a ``denied`` audit event naming ``required``. The instance is
    available to the view as ``request.dps_instance`` (see ``PortalRequest``).
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            instance = get_object_or_404(DpsInstance, name=kwargs[instance_kwarg], enabled=True)
            cast(PortalRequest, request).dps_instance = instance
            refusal = instance_refusal(request, instance)
            if refusal is not None:
                return refusal
            if not allowed(request, instance):
                unknown = permissions_unknown(request, instance)
                if unknown is not None:
                    return unknown
                return deny(
                    request, reason=reason(instance), required=required, instance=instance.name
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def capability_required(
    capability: str | Capability, *, instance_kwarg: str = "instance"
) -> Callable[[View], View]:
    """Require a data-plane capability on the DPS instance named by the URL kwarg."""
    cap = Capability(capability)
    return instance_access_required(
        lambda request, instance: request.user.has_perm(cap.value, instance),
        required=cap.value,
        reason=lambda instance: (
            f"Your Azure role on {instance.name} does not allow this: "
            f"{cap.sentence[0].lower()}{cap.sentence[1:]}"
        ),
        instance_kwarg=instance_kwarg,
    )


def permission_required(permission: str) -> Callable[[View], View]:
    """Require a portal permission (``portal.admin``, ``audit.view``) granted by app roles.

    The check is ``user.has_perm`` (the Entra backend), as in the ``{% can %}`` tag.
    """
    roles = " or ".join(sorted(APP_ROLE_PERMISSIONS[permission]))

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(permission):
                return deny(
                    request,
                    reason=f"This page needs the {roles} role in the portal.",
                    required=roles,
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def app_role_required(*roles: str) -> Callable[[View], View]:
    """Require one of the Entra app roles (Portal.Admin, Portal.Auditor)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not app_roles_of(request.user) & set(roles):
                return deny(
                    request,
                    reason="This page needs the " + " or ".join(roles) + " role in the portal.",
                    required=" or ".join(roles),
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
