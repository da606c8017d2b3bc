"""/metrics: the token check, the exposition as Prometheus parses it, figures of two processes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from portal.metrics import recorder

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "scrape-token-0123456789"


def _scrape(client: Any) -> dict[str, list[Any]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {f.name: f.samples for f in families}


def _value(samples: list[Any], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found)


@pytest.fixture
def metrics_on(settings: Any, worker_id: str) -> Any:
    settings.METRICS_TOKEN = TOKEN
    # A hash per xdist worker: one test's reset must not wipe another's counts.
    settings.METRICS_REDIS_KEY = f"portal:metrics:dps:test-{worker_id}"
    return settings


@pytest.fixture
def instance() -> Any:
    from instances.models import DpsInstance

    return DpsInstance.objects.create(
        name="dps-metrics", host="dps-metrics.azure-devices-provisioning.net"
    )


def test_no_token_configured_answers_404(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = None
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_a_wrong_or_missing_token_is_refused(
    client: Any, metrics_on: Any, header: str | None
) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.content.decode()


def test_exposition_parses_and_reports_calls_by_instance(
    client: Any, metrics_on: Any, instance: Any
) -> None:
    recorder.counters_reset()
    base = f"https://{instance.host}"
    recorder.dps_call_record(base, "GET", "/enrollments/dev-1", 200, 0.04)
    recorder.dps_call_record(base, "GET", "/enrollments/dev-2", 200, 0.3)
    recorder.dps_call_record(base, "POST", "/enrollments/query", 429, 0.01)
    samples = _scrape(client)
    calls = samples["portal_dps_calls"]
    assert (
        _value(calls, "portal_dps_calls_total", operation="GET /enrollments/{id}", status="200")
        == 2
    )
    assert _value(calls, "portal_dps_calls_total", instance="dps-metrics", status="429") == 1
    assert _value(samples["portal_dps_throttled"], "portal_dps_throttled_total") == 1
    latency = samples["portal_dps_call_duration_seconds"]
    get = {"operation": "GET /enrollments/{id}"}
    assert _value(latency, "portal_dps_call_duration_seconds_count", **get) == 2
    assert _value(latency, "portal_dps_call_duration_seconds_bucket", le="0.05", **get) == 1
    assert _value(latency, "portal_dps_call_duration_seconds_bucket", le="+Inf", **get) == 2
    assert _value(latency, "portal_dps_call_duration_seconds_sum", **get) == pytest.approx(0.34)


def test_fleet_and_certificate_figures_come_from_the_database(
    client: Any, metrics_on: Any, instance: Any
) -> None:
    from fleet.models import IndexedRecord, SyncState

    now = timezone.now()
    SyncState.objects.create(
        instance=instance,
        started_at=now - timedelta(seconds=130),
        finished_at=now - timedelta(seconds=100),
    )
    for i, days in enumerate((-1, 5, 29, 31, 90)):
        IndexedRecord.objects.create(
            instance=instance,
            kind="enrollment",
            key=f"dev-{i}",
            record_id=f"dev-{i}",
            attestation="x509",
            cert_not_after=now + timedelta(days=days),
        )
    samples = _scrape(client)
    age = _value(samples["portal_fleet_index_age_seconds"], "portal_fleet_index_age_seconds")
    assert 100 <= age < 160
    duration = samples["portal_fleet_sync_duration_seconds"]
    assert _value(duration, "portal_fleet_sync_duration_seconds", instance="dps-metrics") == 30
    certs = samples["portal_certificates_expiring"]
    assert _value(certs, "portal_certificates_expiring", window="expired") == 1
    assert _value(certs, "portal_certificates_expiring", window="30d") == 2


def test_jobs_by_state_and_rows_applied(
    client: Any, metrics_on: Any, instance: Any, django_user_model: Any
) -> None:
    from enrollments.models import BulkJob

    owner = django_user_model.objects.create(username="owner@example.com")
    for state, done in (("running", 7), ("completed", 5)):
        BulkJob.objects.create(
            owner=owner, instance=instance, kind="import", state=state, count_done=done
        )
    samples = _scrape(client)
    jobs = samples["portal_bulk_jobs"]
    assert _value(jobs, "portal_bulk_jobs", kind="import", state="running") == 1
    assert _value(jobs, "portal_bulk_jobs", kind="import", state="failed") == 0
    assert _value(samples["portal_bulk_rows"], "portal_bulk_rows", outcome="done") == 12


_CHILD = """
import django
django.setup()
from portal.metrics.recorder import dps_call_record
for i in range({n}):
    dps_call_record("https://dps-metrics.azure-devices-provisioning.net", "GET", f"/enrollments/d{{i}}", 200, 0.02)
"""


def test_two_processes_add_to_the_same_figures(client: Any, metrics_on: Any, instance: Any) -> None:
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url or metrics_on.REDIS_URL != redis_url:
        pytest.skip("needs the Redis of REDIS_URL")
    recorder.counters_reset()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "REDIS_URL": redis_url,
        "METRICS_REDIS_KEY": metrics_on.METRICS_REDIS_KEY,
    }
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD.format(n=n)], cwd=ROOT, env=env)
        for n in (40, 60)
    ]
    assert [c.wait(60) for c in children] == [0, 0]
    calls = _scrape(client)["portal_dps_calls"]
    assert _value(calls, "portal_dps_calls_total", instance="dps-metrics", status="200") == 100
