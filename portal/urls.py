"""Root URLs: health endpoints and one include per app."""

from __future__ import annotations

from django.urls import include, path

from portal import health, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", views.home, name="home"),
    path("auth/", include("authn.urls")),
    path("dps/<str:instance>/", include("enrollments.urls")),
    path("dps/<str:instance>/", include("enrollments.urls_bulk")),
    path("dps/<str:instance>/", include("controlplane.urls")),
    path("audit/", include("audit.urls")),
    path("instances/<str:instance>/fleet/", include("fleet.urls")),
]
