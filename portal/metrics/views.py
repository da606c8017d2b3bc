"""``GET /metrics``: the Prometheus exposition, for a scraper holding the bearer token."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from portal.metrics.collector import PortalCollector


def _registry() -> CollectorRegistry:
    # A registry of its own: the default one would add this process's own figures (GC,
    # process), which differ from process to process and would make scrapes disagree.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return registry


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Answer the exposition to a bearer of ``METRICS_TOKEN``; 404 when none is configured."""
    token = getattr(settings, "METRICS_TOKEN", None)
    if not token:
        # Not configured: the endpoint does not exist, so nothing about it leaks.
        raise Http404
    if not _authorized(request, token):
        response = HttpResponse(
            "A bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
