"""URLs of one DPS instance's enrollments, groups and registration records (under /dps/<name>/).

Every path ends in a slash; the slash-less forms of earlier releases answer 301 (APPEND_SLASH).
"""

from __future__ import annotations

from django.urls import path

from enrollments.views import enrollments as e
from enrollments.views import groups as g
from enrollments.views import registrations as r
from fleet.overview_views import instance_overview

app_name = "enrollments"
urlpatterns = [
    path("", instance_overview, name="instance_home"),
    path("enrollments/", e.enrollment_list, name="enrollment_list"),
    path("enrollments/new/", e.enrollment_create, name="enrollment_create"),
    path("enrollments/<str:key>/", e.enrollment_detail, name="enrollment_detail"),
    path("enrollments/<str:key>/edit/", e.enrollment_edit, name="enrollment_edit"),
    path("enrollments/<str:key>/delete/", e.enrollment_delete, name="enrollment_delete"),
    path("enrollments/<str:key>/status/", e.enrollment_status, name="enrollment_status"),
    path("enrollments/<str:key>/reveal/", e.enrollment_reveal, name="enrollment_reveal"),
    path("groups/", g.group_list, name="group_list"),
    path("groups/new/", g.group_create, name="group_create"),
    path("groups/<str:key>/", g.group_detail, name="group_detail"),
    path("groups/<str:key>/edit/", g.group_edit, name="group_edit"),
    path("groups/<str:key>/delete/", g.group_delete, name="group_delete"),
    path("groups/<str:key>/status/", g.group_status, name="group_status"),
    path("groups/<str:key>/reveal/", g.group_reveal, name="group_reveal"),
    path("groups/<str:key>/device-key/", g.group_device_key, name="group_device_key"),
    path("groups/<str:key>/registrations/", r.registration_list, name="registration_list"),
    path(
        "groups/<str:key>/registrations/delete/",
        r.registration_delete_selected,
        name="registration_delete_selected",
    ),
    path("registrations/", r.all_registration_list, name="all_registration_list"),
    path("registrations/<str:key>/", r.registration_detail, name="registration_detail"),
    path("registrations/<str:key>/delete/", r.registration_delete, name="registration_delete"),
]
