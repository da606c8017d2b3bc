"""URLs of one DPS instance's enrollments, groups and registration records (under /dps/<name>/)."""

from __future__ import annotations

from django.urls import path

from enrollments import views

app_name = "enrollments"
urlpatterns = [
    path("", views.instance_home, name="instance_home"),
    path("enrollments/", views.enrollment_list, name="enrollment_list"),
    path("enrollments/new", views.enrollment_create, name="enrollment_create"),
    path("enrollments/<str:key>/", views.enrollment_detail, name="enrollment_detail"),
    path("enrollments/<str:key>/edit", views.enrollment_edit, name="enrollment_edit"),
    path("enrollments/<str:key>/delete", views.enrollment_delete, name="enrollment_delete"),
    path("enrollments/<str:key>/status", views.enrollment_status, name="enrollment_status"),
    path("enrollments/<str:key>/reveal", views.enrollment_reveal, name="enrollment_reveal"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/new", views.group_create, name="group_create"),
    path("groups/<str:key>/", views.group_detail, name="group_detail"),
    path("groups/<str:key>/edit", views.group_edit, name="group_edit"),
    path("groups/<str:key>/delete", views.group_delete, name="group_delete"),
    path("groups/<str:key>/status", views.group_status, name="group_status"),
    path("groups/<str:key>/reveal", views.group_reveal, name="group_reveal"),
    path("groups/<str:key>/device-key", views.group_device_key, name="group_device_key"),
    path("groups/<str:key>/registrations/", views.registration_list, name="registration_list"),
    path(
        "groups/<str:key>/registrations/delete",
        views.registration_delete_selected,
        name="registration_delete_selected",
    ),
    path("registrations/<str:key>/", views.registration_detail, name="registration_detail"),
    path("registrations/<str:key>/delete", views.registration_delete, name="registration_delete"),
]
