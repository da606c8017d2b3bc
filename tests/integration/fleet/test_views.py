"""The lists answered from the fleet index: search, filter, sort, page, facets, refresh, 403."""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent
from enrollments.dps.types import InitialTwin
from fleet.models import SyncState
from instances.models import DpsInstance
from tests.integration.enrollments.conftest import (  # noqa: F401 - fixtures
    INSTANCE,
    _isolated_caches,
    dps_entry,
    dps_instances,
    owner_client,
    seed,
    signed_in,
    unique,
)

from .support import run_pass

pytestmark = pytest.mark.django_db
BASE = f"/instances/{INSTANCE}/fleet"
LISTS = f"/dps/{INSTANCE}"


@pytest.fixture
def prod(azure_settings: Any, dps_instances: Any) -> DpsInstance:
    return DpsInstance.objects.get(name=INSTANCE)


def test_search_filter_sort_and_page(prod: DpsInstance, seed: Any, signed_in: Any) -> None:
    stem = unique("fleetview")
    for i in range(30):
        seed.enrollment(
            f"{stem}-{i:02d}",
            initial_twin=InitialTwin.of(tags={"plant": "9" if i % 3 == 0 else "1"}),
            provisioning_status="disabled" if i % 2 else "enabled",
        )
    reggie = signed_in("reggie")  # Data Reader
    before = reggie.get(f"{LISTS}/enrollments/")
    assert before.status_code == 200
    assert b'data-testid="fleet-banner"' in before.content  # not indexed yet
    run_pass(prod)

    page1 = reggie.get(f"{LISTS}/enrollments/", {"q": stem})
    assert page1.status_code == 200
    assert page1.context["page"].total == 30
    assert len(page1.context["page"].rows) == 25
    assert page1.context["page"].pages == 2
    assert b'data-testid="fleet-banner"' not in page1.content
    assert b'data-testid="fleet-states-known"' in page1.content
    page2 = reggie.get(f"{LISTS}/enrollments/", {"q": stem, "page": 2})
    assert [r.record_id for r in page2.context["page"].rows] == [
        f"{stem}-{i}" for i in range(25, 30)
    ]

    inside = reggie.get(f"{LISTS}/enrollments/", {"q": stem[-6:], "match": "contains"})
    assert inside.context["page"].total == 30
    both = reggie.get(f"{LISTS}/enrollments/", {"q": stem, "status": "disabled", "tag": "plant=9"})
    ids = {r.record_id for r in both.context["page"].rows}
    assert ids == {f"{stem}-{i:02d}" for i in range(30) if i % 2 and i % 3 == 0}
    # Disjunctive: the plant's enabled ones are still counted beside the chosen status.
    assert both.context["page"].facets["status"] == {"disabled": len(ids), "enabled": 10 - len(ids)}
    newest = reggie.get(f"{LISTS}/enrollments/", {"q": stem, "sort": "-updated"})
    assert newest.context["page"].rows[0].record_id == f"{stem}-29"
    bad = reggie.get(f"{LISTS}/enrollments/", {"tag": "no-equals-sign"})
    assert bad.status_code == 400


def test_refresh_queues_a_pass_as_the_user(
    prod: DpsInstance, signed_in: Any, monkeypatch: Any
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("fleet.tasks.fleet_sync_task.delay", queued.append)
    dana = signed_in("dana")
    with pytest.MonkeyPatch.context() as m:
        m.setattr("django.db.transaction.on_commit", lambda fn: fn())
        response = dana.post(f"{BASE}/refresh/", {"kind": "enrollment"})
    assert response.status_code == 302
    assert queued == [prod.pk]
    assert SyncState.objects.get(instance=prod).requested_by.entra_identity.upn.startswith("dana")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", f"{LISTS}/enrollments/"),
        ("get", f"{LISTS}/enrollments/?q=dev&status=enabled"),
        ("get", f"{LISTS}/enrollments/?tag=plant%3D1&drifted=on&sort=-updated&page=2"),
        ("get", f"{LISTS}/groups/"),
        ("get", f"{LISTS}/groups/?q=g&match=contains"),
        ("get", f"{LISTS}/groups/any-group/registrations/"),
        ("get", f"{LISTS}/groups/any-group/registrations/?q=dev&status=assigned"),
        ("get", f"{LISTS}/registrations/"),
        ("get", f"{LISTS}/registrations/?status=failed&hub=h.azure-devices.net&sort=group"),
        ("get", f"{BASE}/enrollments/"),
        ("get", f"{BASE}/enrollments/?q=dev&status=enabled"),
        ("get", f"{BASE}/groups/"),
        ("get", f"{BASE}/groups/any-group/registrations/"),
        ("post", f"{BASE}/refresh/"),
    ],
)
def test_users_without_read_get_403(
    prod: DpsInstance, signed_in: Any, method: str, url: str
) -> None:
    nora = signed_in("nora")  # no role on any instance
    run_pass(prod)
    response = getattr(nora, method)(url)
    assert response.status_code == 403
    assert b"fleet-total" not in response.content
    assert b'data-testid="row-' not in response.content
    assert AuditEvent.objects.filter(action=AuditAction.DENIED, dps_instance=INSTANCE).exists()


def test_search_finds_device_ids_too(prod: DpsInstance, seed: Any, signed_in: Any) -> None:
    device = unique("fleetdevice")
    seed.enrollment(unique("fleetreg"), device_id=device)
    run_pass(prod)
    reggie = signed_in("reggie")
    found = reggie.get(f"{LISTS}/enrollments/", {"q": device[:-2]})
    assert [r.device_id for r in found.context["page"].rows] == [device]
    inside = reggie.get(f"{LISTS}/enrollments/", {"q": device[-5:], "match": "contains"})
    assert device in {r.device_id for r in inside.context["page"].rows}


def test_all_matching_ids_and_etags_for_a_job(prod: DpsInstance, seed: Any) -> None:
    from fleet.selectors import RecordQuery, matching_ids

    stem = unique("fleetall")
    made = {
        e.registration_id: e.etag
        for e in (seed.enrollment(f"{stem}-{i}", provisioning_status="disabled") for i in range(5))
    }
    run_pass(prod)
    found = dict(matching_ids(prod, "enrollment", RecordQuery(search=stem, status="disabled")))
    assert found == made
