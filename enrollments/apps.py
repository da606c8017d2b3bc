from __future__ import annotations

from django.apps import AppConfig


class EnrollmentsConfig(AppConfig):
    name = "enrollments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from enrollments.signals import resume_jobs_on_signin

        user_logged_in.connect(resume_jobs_on_signin, dispatch_uid="enrollments.resume_jobs")
