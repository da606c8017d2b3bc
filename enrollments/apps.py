from __future__ import annotations

from django.apps import AppConfig


class EnrollmentsConfig(AppConfig):
    name = "enrollments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from authn.signals import token_cache_holders
        from enrollments.signals import resume_jobs_on_signin, token_cache_holders_of_jobs

        user_logged_in.connect(resume_jobs_on_signin, dispatch_uid="enrollments.resume_jobs")
        token_cache_holders.connect(
            token_cache_holders_of_jobs, dispatch_uid="enrollments.token_cache_holders"
        )
