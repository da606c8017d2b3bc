"""DPS failures turned into pages: one table of exception → status and title, one decorator.

A view lets a :class:`~enrollments.dps.exceptions.DpsError` propagate; :func:`dps_errors`
renders it (an htmx fragment for htmx requests) with DPS's trackingId. The page names the
capability the failed call needed: the view's default, or the one a ``with needing(...)``
block around a write or a delete declared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from authn.capabilities import capabilities_invalidate
from authn.permissions import Capability
from authn.request import PortalRequest
from enrollments.dps.exceptions import (
    DpsBadRequest,
    DpsConflict,
    DpsError,
    DpsForbidden,
    DpsHostRefused,
    DpsNotFound,
    DpsPreconditionFailed,
    DpsQuotaExceeded,
    DpsThrottled,
    DpsUnauthorized,
)
from enrollments.views.context import page_context

View = Callable[..., HttpResponseBase]
C = Capability
CONTRIBUTOR = "Device Provisioning Service Data Contributor"
READER = "Device Provisioning Service Data Reader"

# First match wins; anything else (unavailable, invalid answer) is a 503. A full instance
# (DPS says 403 with 403002) is not a missing role: it comes before the 403 of a role.
ERROR_PAGES: tuple[tuple[type[DpsError], int, str], ...] = (
    (DpsHostRefused, 503, "This DPS instance is refused"),
    (DpsQuotaExceeded, 409, "DPS instance limit reached"),
    (DpsForbidden, 403, "Not allowed by DPS"),
    (DpsNotFound, 404, "Not found"),
    (DpsConflict, 409, "Conflict"),
    (DpsPreconditionFailed, 412, "Changed by someone else"),
    (DpsThrottled, 429, "DPS is busy"),
    (DpsUnauthorized, 401, "DPS refused the sign-in"),
    (DpsBadRequest, 400, "DPS rejected the request"),
)
UNAVAILABLE = (503, "DPS is unavailable")


class DpsCallFailed(Exception):
    """A DPS call failed that needed ``needed`` (raised by :func:`needing`)."""

    def __init__(self, error: DpsError, needed: Capability) -> None:
        super().__init__(str(error))
        self.error = error
        self.needed = needed


@contextmanager
def needing(capability: Capability) -> Iterator[None]:
    """Say which capability the DPS calls inside the block need, for the 403 page."""
    try:
        yield
    except DpsError as exc:
        raise DpsCallFailed(exc, capability) from exc


def role_needed(capability: Capability) -> str:
    """Say which role grants ``capability`` (for a DPS 403)."""
    if capability.value.endswith(".read"):
        return f"{READER} or {CONTRIBUTOR}"
    if capability is C.ATTESTATION_REVEAL:
        return f"{CONTRIBUTOR}, or a custom role with {capability.data_action}"
    return CONTRIBUTOR


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def htmx_alert(response: HttpResponse) -> HttpResponse:
    """Send an htmx answer to the page's alert area instead of the element that asked."""
    response["HX-Retarget"] = "#dps-alerts"
    response["HX-Reswap"] = "innerHTML"
    return response


def _hint(request: PortalRequest, exc: DpsError, needed: Capability) -> str:
    instance = request.dps_instance
    if isinstance(exc, DpsForbidden):
        capabilities_invalidate(request.user, instance)
        return (
            f"This needs the data action {needed.data_action} on {instance.name}, "
            f"which the role {role_needed(needed)} grants. Ask an owner of the DPS instance "
            "to assign it; the portal has re-read your permissions."
        )
    if isinstance(exc, DpsThrottled):
        wait = f" in {exc.retry_after:.0f} seconds" if exc.retry_after else " in a moment"
        return f"Try again{wait}."
    return ""


def dps_error_page(request: PortalRequest, exc: DpsError, needed: Capability) -> HttpResponse:
    """Render a DPS failure in words; a 403 also forgets the user's cached capabilities."""
    status, title = next(((s, t) for cls, s, t in ERROR_PAGES if isinstance(exc, cls)), UNAVAILABLE)
    hint = _hint(request, exc, needed)
    ctx = page_context(request, "enrollment", error=exc, title=title, hint=hint, status=status)
    template = "enrollments/_dps_error.html" if is_htmx(request) else "enrollments/dps_error.html"
    response = render(request, template, ctx, status=status)
    if isinstance(exc, DpsThrottled) and exc.retry_after:
        response["Retry-After"] = str(int(exc.retry_after))
    return htmx_alert(response) if is_htmx(request) else response


def dps_errors(needed: Capability) -> Callable[[View], View]:
    """Render any DPS failure of the view as a page; ``needed`` is the view's capability."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: PortalRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                return view(request, *args, **kwargs)
            except DpsCallFailed as failed:
                return dps_error_page(request, failed.error, failed.needed)
            except DpsError as exc:
                return dps_error_page(request, exc, needed)

        return wrapped

    return decorator
