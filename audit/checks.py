"""System check: the audit chain's HMAC keys are configured and well-formed."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register(checks.Tags.security)
def check_audit_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse to start (migrate, runserver, check --deploy) without usable AUDIT_HMAC_KEYS."""
    from audit.keys import audit_keys

    try:
        audit_keys()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set AUDIT_HMAC_KEYS in the environment (see .env.example and "
                "docs/operations.md, 'Audit log integrity').",
                id="audit.E001",
            )
        ]
    return []
