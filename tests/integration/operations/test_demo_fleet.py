"""The demo fleet of ``make run``, small, on emulators of its own: what it leaves, and once only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from emulators.demo import MARKER_GROUP, X509_GROUPS, DemoTarget, is_seeded
from enrollments.ratelimit import LocalTokenBucket
from tests.conftest import emulator_dps_hosts

pytestmark = pytest.mark.django_db(transaction=True)

SCALE = 0.02  # 100 enrollments, a few hundred devices


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Emulators of this module only: the demo fills an instance other tests count in."""
    from emulators.common.server import EmulatorStack

    state = tmp_path_factory.mktemp("demo-emulators")
    stack = EmulatorStack(state).start()
    yield stack
    stack.stop()


@pytest.fixture
def portal(settings: Any, stack: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    endpoints: dict[str, Any] = stack.endpoints()
    app = next(a for a in endpoints["apps"] if a["name"] == "DPS Enrollment Portal")
    settings.ENTRA_TENANT_ID = endpoints["tenant_id"]
    settings.ENTRA_AUTHORITY = endpoints["authority"]
    settings.ENTRA_CLIENT_ID = app["client_id"]
    settings.ENTRA_CLIENT_SECRET = app["client_secret"]
    settings.AZURE_CA_BUNDLE = endpoints["ca_cert"]
    settings.ARM_ENDPOINT = endpoints["arm_endpoint"]
    settings.DPS_EMULATOR_HOSTS = emulator_dps_hosts(endpoints)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.FLEET_SYNC_STATE_READS = 1000
    # Unpaced passes: the test is about what the demo leaves, not about pacing.
    fast = LocalTokenBucket(1_000_000)
    monkeypatch.setattr("fleet.sync.bucket_for_sync", lambda name: fast)
    path = Path(stack.state_dir) / "endpoints.json"
    call_command("dps_instance_import", "--from-endpoints", str(path), stdout=StringIO())
    return {"endpoints": endpoints, "path": str(path)}


def _run(portal: dict[str, Any], tmp_path: Path) -> str:
    out = StringIO()
    status = tmp_path / "demo.json"
    call_command(
        "demo_fleet",
        "--endpoints",
        portal["path"],
        "--scale",
        str(SCALE),
        "--status-file",
        str(status),
        stdout=out,
    )
    assert json.loads(status.read_text())["message"].startswith("ready in")
    return out.getvalue()


def test_the_demo_fleet_is_seeded_indexed_and_drifted_once(
    portal: dict[str, Any], tmp_path: Path
) -> None:
    from fleet.models import IndexedRecord, IndexedRegistration

    target = DemoTarget.from_endpoints(portal["endpoints"], "dps-fleet-prod")
    assert not is_seeded(target)
    text = _run(portal, tmp_path)
    assert is_seeded(target)
    assert "orphaned registration records" in text

    records = IndexedRecord.objects.filter(instance__name="dps-fleet-prod")
    enrollments = records.filter(kind="enrollment")
    # 100 seeded, one deleted and three created outside the portal after the first pass.
    assert enrollments.count() == 102
    assert set(enrollments.values_list("attestation", flat=True)) == {"symmetricKey", "tpm", "x509"}
    assert enrollments.filter(tags__has_key="plant").count() == 99
    groups = records.filter(kind="group")
    assert "demo-retired" not in set(groups.values_list("key", flat=True))
    assert groups.count() == 4 + 2 + len(X509_GROUPS) + 1
    assert groups.filter(attestation="symmetricKey").count() == 7
    assert groups.filter(attestation="x509").count() == len(X509_GROUPS)

    now = timezone.now()
    x509 = {g.key: g.cert_not_after for g in groups.filter(attestation="x509")}
    assert x509["demo-x509-expired"] < now
    for key, days in (("demo-x509-7d", 7), ("demo-x509-30d", 30), ("demo-x509-90d", 90)):
        assert now < x509[key] < now + timedelta(days=days)
    assert enrollments.filter(cert_not_after__lt=now).exists()  # expired client certificates

    registrations = IndexedRegistration.objects.filter(instance__name="dps-fleet-prod")
    assert registrations.filter(status="assigned").count() >= 40
    assert registrations.filter(status="failed").count() == 1  # demo-site-custom: 40 x 0.02
    assert registrations.filter(status="disabled").exists()
    # Changed outside the portal after the first pass: the second pass saw it as drift.
    assert records.filter(drift_at__isnull=False).count() >= 3

    # The deleted group's registration records are still in DPS (orphans).
    # (DPS answers 404 to a query of a group that is gone: each record is read by its id.)
    assert target.service("POST", "/registrations/demo-retired/query") is None
    for n in range(2):  # 80 x 0.02
        orphan = target.service("GET", f"/registrations/demo-retired-dev-{n:05d}")
        assert orphan["status"] == "assigned"

    # Once only: a second run changes nothing.
    before = target.service("GET", f"/enrollmentGroups/{MARKER_GROUP}")["etag"]
    text = _run(portal, tmp_path)
    assert "already seeded" in text
    assert target.service("GET", f"/enrollmentGroups/{MARKER_GROUP}")["etag"] == before
    assert enrollments.count() == 102
