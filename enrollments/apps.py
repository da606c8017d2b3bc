from __future__ import annotations

from django.apps import AppConfig


class EnrollmentsConfig(AppConfig):
    name = "enrollments"
    default_auto_field = "django.db.models.BigAutoField"
