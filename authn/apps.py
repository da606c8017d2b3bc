from __future__ import annotations

from django.apps import AppConfig


class AuthnConfig(AppConfig):
    name = "authn"
    default_auto_field = "django.db.models.BigAutoField"
