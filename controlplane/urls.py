"""URLs of one DPS instance's control plane (under /dps/<name>/)."""

from __future__ import annotations

from django.urls import path

from controlplane import views

app_name = "controlplane"
urlpatterns = [
    path("certificates/", views.certificate_list, name="certificate_list"),
    path("certificates/upload/", views.certificate_upload, name="certificate_upload"),
    path("certificates/<str:name>/code/", views.certificate_code, name="certificate_code"),
    path("certificates/<str:name>/verify/", views.certificate_verify, name="certificate_verify"),
    path("certificates/<str:name>/delete/", views.certificate_delete, name="certificate_delete"),
    path("hubs/", views.hub_list, name="hub_list"),
]
