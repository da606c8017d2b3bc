"""Fixtures of the audit page tests: users by app role, signed-in clients, seeded events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.services import audit_record
from tests.integration.authn.conftest import (  # noqa: F401 - fixtures re-exported
    _isolated_caches,
    browser,
    dps_instances,
    entra_control,
    entra_signin,
    portal_client,
)


def make_user(django_user_model: Any, name: str, roles: list[str]) -> Any:
    from authn.models import EntraIdentity

    user = django_user_model.objects.create_user(name, first_name=name.title())
    EntraIdentity.objects.create(
        user=user,
        tenant_id="tid",
        object_id=f"oid-{name}",
        upn=f"{name}@contoso.example",
        display_name=f"{name.title()} Person",
        app_roles=roles,
    )
    return user


@pytest.fixture
def admin(django_user_model: Any) -> Any:
    return make_user(django_user_model, "ada", ["Portal.Admin"])


@pytest.fixture
def auditor(django_user_model: Any) -> Any:
    return make_user(django_user_model, "audrey", ["Portal.Auditor"])


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    return make_user(django_user_model, "oscar", ["Portal.Operator"])


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user, backend="authn.backends.EntraBackend")
    return client


@pytest.fixture
def auditor_client(auditor: Any) -> Client:
    return signed_in(auditor)


@pytest.fixture
def record() -> Callable[..., AuditEvent]:
    """Write one event through audit_record, optionally back-dated (time is part of the hash)."""

    def _record(
        *,
        actor: Any = None,
        action: str = AuditAction.ENROLLMENT_UPDATE,
        outcome: str = AuditOutcome.SUCCESS,
        at: datetime | None = None,
        **kw: Any,
    ) -> AuditEvent:
        if at is None:
            return audit_record(actor=actor, action=action, outcome=outcome, **kw)
        from unittest import mock

        with mock.patch("audit.services.timezone.now", return_value=at):
            return audit_record(actor=actor, action=action, outcome=outcome, **kw)

    return _record


@pytest.fixture
def days_ago() -> Callable[[float], datetime]:
    now = timezone.now()
    return lambda days: now - timedelta(days=days)
