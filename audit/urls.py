"""URLs of the audit pages (under /audit/)."""

from __future__ import annotations

from django.urls import path
from django.views.generic.base import RedirectView

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.event_list, name="event_list"),
    path("events/<int:pk>/", views.event_detail, name="event_detail"),
    path("targets/", views.target_history_query, name="target_history_query"),
    path(
        "targets/<str:dps_instance>/<str:target_type>/<str:target_id>/",
        views.target_history,
        name="target_history",
    ),
    path("actors/<str:actor>/", views.actor_activity, name="actor_activity"),
    path("chart/", views.chart, name="chart"),
    path("export/<str:fmt>/", views.export, name="export"),
    # The exports' earlier address (APPEND_SLASH cannot map it).
    path(
        "export.<str:fmt>",
        RedirectView.as_view(pattern_name="audit:export", permanent=True, query_string=True),
    ),
]
