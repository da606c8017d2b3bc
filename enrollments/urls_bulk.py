"""URLs of bulk jobs of one DPS instance (under /dps/<instance>/bulk/).

Every path ends in a slash; the slash-less forms of earlier releases answer 301 (APPEND_SLASH).
"""

from __future__ import annotations

from django.urls import path
from django.views.generic.base import RedirectView

from enrollments.views import jobs as v
from enrollments.views.select_matching import select_matching

app_name = "bulk"
urlpatterns = [
    path("bulk/import/", v.import_page, name="import"),
    path("bulk/format/", v.format_help, name="format_help"),
    path("bulk/export/", v.export_start, name="export"),
    path("bulk/delete-selected/", v.delete_selected, name="delete_selected"),
    path(
        "bulk/groups/<str:key>/delete-registrations/",
        v.group_registrations_delete,
        name="group_registrations_delete",
    ),
    path("bulk/select-matching/<str:kind>/", select_matching, name="select_matching"),
    path("bulk/jobs/", v.job_list, name="job_list"),
    path("bulk/jobs/<int:job_id>/", v.job_detail, name="job_detail"),
    path("bulk/jobs/<int:job_id>/progress/", v.job_progress, name="job_progress"),
    path("bulk/jobs/<int:job_id>/confirm/", v.job_confirm, name="job_confirm"),
    path("bulk/jobs/<int:job_id>/cancel/", v.job_cancel, name="job_cancel"),
    path("bulk/jobs/<int:job_id>/report/", v.job_report, name="job_report"),
    path("bulk/jobs/<int:job_id>/download/", v.job_download, name="job_download"),
    # The report's earlier address (APPEND_SLASH cannot map it).
    path(
        "bulk/jobs/<int:job_id>/report.csv",
        RedirectView.as_view(pattern_name="bulk:job_report", permanent=True, query_string=True),
    ),
]
