from __future__ import annotations

from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Fleet index"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from fleet.refresh import instance_registered
        from instances.models import DpsInstance

        post_save.connect(instance_registered, sender=DpsInstance, dispatch_uid="fleet.first_pass")
