"""The registry of the DPS instances the portal works with."""

from __future__ import annotations

from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "DPS instances"
    default_auto_field = "django.db.models.BigAutoField"
