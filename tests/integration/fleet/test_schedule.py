"""When passes are queued: the beat entry, a newly registered instance, the seed route."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.conf import settings

from instances.models import DpsInstance

pytestmark = pytest.mark.django_db


def test_beat_runs_every_instance_every_15_minutes_by_default() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["fleet-sync-all"]
    assert entry == {"task": "fleet.sync_all", "schedule": 900.0}


def test_a_registered_instance_gets_its_first_pass(
    settings: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("fleet.tasks.fleet_sync_task.delay", queued.append)
    settings.FLEET_SYNC_ON_REGISTER = True
    with django_capture_on_commit_callbacks(execute=True):
        dps = DpsInstance.objects.create(
            name="dps-fleet-new",
            host="dps-fleet-new.azure-devices-provisioning.net",
            resource_id="/subscriptions/61bbc72c-832c-469c-a36e-8c2fffbbc31c/resourceGroups/rg/"
            "providers/Microsoft.Devices/provisioningServices/dps-fleet-new",
        )
        dps.save()  # an edit queues nothing more
    assert queued == [dps.pk]


def test_seed_route_fills_an_instance(endpoints: dict[str, Any]) -> None:
    lab = next(d for d in endpoints["dps"] if d["name"] == "dps-fleet-lab")
    session = requests.Session()
    session.trust_env = False
    url = f"https://{lab['host']}/_emulator/seed"
    body = {"count": 25, "prefix": "seed-route-test"}
    first = session.post(url, json=body, verify=endpoints["ca_cert"], timeout=30)
    assert first.status_code == 200
    assert first.json()["inserted"] == 25
    again = session.post(url, json=body, verify=endpoints["ca_cert"], timeout=30)
    assert again.json()["inserted"] == 0
    bad = session.post(url, json={"count": 0}, verify=endpoints["ca_cert"], timeout=30)
    assert bad.status_code == 400
