"""URLs of the fleet index pages, under ``/instances/<instance>/fleet/``."""

from __future__ import annotations

from django.urls import path

from fleet import views

app_name = "fleet"

urlpatterns = [
    path("enrollments/", views.enrollments, name="enrollments"),
    path("groups/", views.groups, name="groups"),
    path("groups/<str:group>/registrations/", views.registrations, name="registrations"),
    path("refresh/", views.refresh, name="refresh"),
]
