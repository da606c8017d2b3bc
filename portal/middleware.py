"""Request id and security header middleware."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from authn.msal_app import authority
from portal.context import client_ip_var, request_id_var

_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Give each request an id (``X-Request-ID`` if a proxy sent a sane one) for logs and audit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        request.id = rid  # type: ignore[attr-defined]
        token = request_id_var.set(rid)
        ip_token = client_ip_var.set(request.META.get("REMOTE_ADDR", ""))
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            client_ip_var.reset(ip_token)
        response["X-Request-ID"] = rid
        return response


class SecurityHeadersMiddleware:
    """Add the headers Django does not set itself: Content-Security-Policy and Permissions-Policy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", content_security_policy())
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


def content_security_policy() -> str:
    """Return the configured policy with the Entra authority's origin added to ``form-action``.

    The sign-out form posts to the portal, which redirects to the authority's logout endpoint;
    browsers check form-action on that redirect too. No other origin may receive a form.
    """
    try:
        parts = urlsplit(authority())
        origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    except ImproperlyConfigured:
        origin = ""
    return _with_form_action_origin(settings.CONTENT_SECURITY_POLICY, origin)


@lru_cache(maxsize=8)
def _with_form_action_origin(policy: str, origin: str) -> str:
    if not origin:
        return policy
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    for i, directive in enumerate(directives):
        name, *sources = directive.split()
        if name == "form-action" and origin not in sources and "'none'" not in sources:
            directives[i] = " ".join([name, *sources, origin])
    return "; ".join(directives)
