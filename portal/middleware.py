"""Request id and security header middleware."""

from __future__ import annotations

import ipaddress
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

# ASCII letters, digits and ._- only (a UUID qualifies); fullmatch, so no trailing newline.
_INCOMING_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(incoming: str) -> str:
    """Return ``incoming`` when it is a well-formed request id, else a new random one."""
    return incoming if _INCOMING_ID.fullmatch(incoming) else uuid.uuid4().hex


def client_address(request: HttpRequest) -> str:
    """Return the client's IP address as the audit records it.

    Behind the reverse proxy (``PORTAL_BEHIND_PROXY``) the peer is the proxy, so the client
    comes from ``X-Forwarded-For``: the ``PORTAL_PROXY_HOPS``-th entry from the right, the
    one the outermost trusted proxy appended (entries further left are whatever the client
    sent and are never trusted). A missing or malformed entry falls back to ``REMOTE_ADDR``.
    """
    peer = str(request.META.get("REMOTE_ADDR", ""))
    if not settings.PORTAL_BEHIND_PROXY:
        return peer
    entries = [e.strip() for e in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = max(int(settings.PORTAL_PROXY_HOPS), 1)
    if len(entries) < hops:
        return peer
    return _forwarded_ip(entries[-hops]) or peer


def _forwarded_ip(entry: str) -> str | None:
    """Return the address of one X-Forwarded-For entry, with or without a port, or None.

    Some proxies (Azure Application Gateway) append ``address:port``, or ``[v6]:port``.
    """
    host = entry
    if entry.startswith("[") and "]" in entry:
        host = entry[1 : entry.index("]")]
    elif entry.count(":") == 1:
        host = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class RequestIdMiddleware:
    """Give each request an id (``X-Request-ID`` if well-formed) and its client address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id_from(request.headers.get("X-Request-ID", ""))
        request.id = rid  # type: ignore[attr-defined]
        token = request_id_var.set(rid)
        ip_token = client_ip_var.set(client_address(request))
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
