"""Turn ReauthRequired, wherever a view raises it, into a "sign in again" prompt.

TokenUnavailable (Entra ID could not be reached, or refused in a way a new sign-in cannot
fix) becomes a "try again" page with status 503 instead of a server error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from audit.models import AuditAction, AuditOutcome
from audit.services import audit_record
from authn.exceptions import ReauthRequired, TokenUnavailable

log = logging.getLogger(__name__)


def _return_path(request: HttpRequest) -> str:
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    # A POST cannot be replayed after sign-in; come back to the page it was sent from.
    from authn.services import safe_next_url

    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc != request.get_host():
        return "/"
    path = referer.path + (f"?{referer.query}" if referer.query else "")
    return safe_next_url(request, path)


class ReauthRequiredMiddleware:
    """Answer 401 with a page that signs the user in again and returns to the same URL."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, TokenUnavailable):
            return _token_unavailable(request, exception)
        if not isinstance(exception, ReauthRequired):
            return None
        audit_record(
            actor=request.user,
            action=AuditAction.REAUTH,
            outcome=AuditOutcome.FAILED,
            message=f"Entra ID requires a new sign-in ({exception.error or 'no token'})",
        )
        login_url = reverse("authn:login") + "?" + urlencode({"next": _return_path(request)})
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=401)
            response["HX-Redirect"] = login_url
            return response
        return render(request, "authn/reauth.html", {"login_url": login_url}, status=401)


def _token_unavailable(request: HttpRequest, exception: TokenUnavailable) -> HttpResponse:
    # An outage, not a decision about the user: logged, not audited as a refusal.
    log.warning("token unavailable for %s %s: %s", request.method, request.path, exception)
    template = (
        "authn/_token_unavailable.html"
        if request.headers.get("HX-Request")
        else "authn/token_unavailable.html"
    )
    response = render(
        request,
        template,
        {"reason": str(exception), "unreachable": not exception.error},
        status=503,
    )
    response["Retry-After"] = "30"
    return response
