"""Root URLs: health endpoints and one include per app."""

from __future__ import annotations

from django.urls import include, path

from portal import health, views
from portal.metrics.views import metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # The address Prometheus scrapes by default: outside the slash convention, like the probes.
    path("metrics", metrics, name="metrics"),
    path("", views.home, name="home"),
    path("auth/", include("authn.urls")),
    path("dps/<str:instance>/", include("enrollments.urls")),
    path("dps/<str:instance>/", include("enrollments.urls_bulk")),
    path("dps/<str:instance>/", include("controlplane.urls")),
    path("audit/", include("audit.urls")),
    path("instances/<str:instance>/fleet/", include("fleet.urls")),
]
