"""A small fleet seeded straight into the index, with one of every kind of trouble."""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from fleet.models import IndexedRecord, IndexedRegistration, RecordKind, SyncState
from instances.models import DpsInstance
from tests.integration.enrollments.conftest import (  # noqa: F401 - fixtures
    INSTANCE,
    _isolated_caches,
    dps_entry,
    dps_instances,
    owner_client,
    seed,
    signed_in,
)

HUB_A, HUB_B = "hub-a.azure-devices.net", "hub-b.azure-devices.net"


@pytest.fixture
def prod(azure_settings: Any, dps_instances: Any) -> DpsInstance:
    return DpsInstance.objects.get(name=INSTANCE)


def _record(instance: DpsInstance, kind: str, rid: str, **fields: Any) -> IndexedRecord:
    """Index one record; a ``cert_not_after`` alone is its primary certificate's end."""
    if fields.get("cert_not_after") and "secondary_not_after" not in fields:
        fields.setdefault("primary_not_after", fields["cert_not_after"])
    return IndexedRecord.objects.create(
        instance=instance, kind=kind, key=rid.lower(), record_id=rid, **fields
    )


def _registration(instance: DpsInstance, rid: str, **fields: Any) -> IndexedRegistration:
    return IndexedRegistration.objects.create(
        instance=instance, key=rid.lower(), registration_id=rid, **fields
    )


@pytest.fixture
def fleet(prod: DpsInstance) -> DpsInstance:
    """Seed the index of ``prod`` directly: a small fleet with one of every kind of trouble."""
    return seed_fleet(prod)


def seed_fleet(prod: DpsInstance) -> DpsInstance:
    """Index a small fleet into ``prod`` with one of every kind of trouble; return ``prod``."""
    now = timezone.now()
    old = now - dt.timedelta(days=40)
    SyncState.objects.create(
        instance=prod, pass_id=1, finished_at=now, counts={"enrollment": 10, "group": 2}
    )
    for i in range(6):
        _record(
            prod,
            RecordKind.ENROLLMENT,
            f"sym-{i}",
            attestation="symmetricKey",
            status="enabled",
            iot_hub_host_name=HUB_A,
            created=old,
        )
    for i in range(3):
        _record(
            prod,
            RecordKind.ENROLLMENT,
            f"x509-{i}",
            attestation="x509",
            status="disabled",
            x509_kind="client",
            cert_not_after=now + dt.timedelta(days=5 + 30 * i),
            created=old,
        )
    _record(
        prod,
        RecordKind.ENROLLMENT,
        "tpm-0",
        attestation="tpm",
        status="enabled",
        created=old,
        registration_read_at=now,
        registration_status="unassigned",
        drift_at=now - dt.timedelta(days=1),
    )
    _record(
        prod,
        RecordKind.GROUP,
        "grp-x509",
        attestation="x509",
        status="enabled",
        cert_not_after=now - dt.timedelta(seconds=1),
    )
    _record(prod, RecordKind.GROUP, "grp-sym", attestation="symmetricKey", status="enabled")
    for i in range(4):
        _registration(
            prod,
            f"dev-{i}",
            group_key="grp-sym",
            status="assigned",
            assigned_hub=HUB_A if i < 3 else HUB_B,
            created=now - dt.timedelta(days=i),
        )
    _registration(
        prod,
        "dev-bad",
        group_key="grp-x509",
        status="failed",
        error_code=401002,
        error_message="The certificate chain is not trusted.",
        created=now,
    )
    for i in range(2):
        _registration(
            prod,
            f"orphan-{i}",
            group_key="grp-gone",
            status="assigned",
            assigned_hub=HUB_B,
            etag=f"etag-{i}",
            created=now,
        )
    _registration(prod, "sym-0", group_key="", status="assigned", assigned_hub=HUB_A, created=now)
    return prod
