"""The record lists once the index is complete: search, filters, sort, pages, totals, facets,
the old index URLs' redirects, and "changed outside the portal" on the lists and detail pages."""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditEvent
from enrollments.dps.exceptions import DpsNotFound
from enrollments.dps.types import DeviceCapabilities, InitialTwin
from fleet import facets
from fleet.models import IndexedRecord
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
LISTS = f"/dps/{INSTANCE}"
OLD = f"/instances/{INSTANCE}/fleet"


@pytest.fixture
def prod(azure_settings: Any, dps_instances: Any) -> DpsInstance:
    return DpsInstance.objects.get(name=INSTANCE)


def _ids(response: Any) -> list[str]:
    return [row["key"] for row in response.context["rows"]]


def test_enrollment_list_searches_filters_sorts_and_pages(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    stem = unique("lists")
    for i in range(30):
        seed.enrollment(
            f"{stem}-{i:02d}",
            device_id=f"{stem}-device-{i:02d}",
            initial_twin=InitialTwin.of(tags={"line": "a" if i < 10 else "b"}),
            provisioning_status="disabled" if i % 2 else "enabled",
        )
    dana = signed_in("dana")
    run_pass(prod)

    first = dana.get(f"{LISTS}/enrollments/", {"q": stem})
    assert first.status_code == 200
    assert b'data-testid="fleet-banner"' not in first.content
    assert b'data-testid="fleet-refresh"' in first.content
    assert first.context["page"].total == 30
    assert _ids(first) == [f"{stem}-{i:02d}" for i in range(25)]
    html = first.content.decode()
    total = re.search(r'data-testid="fleet-total"><strong>([\d,]+)</strong> of ([\d,]+)', html)
    assert total is not None
    assert total.group(1) == "30"
    assert int(total.group(2).replace(",", "")) >= 30  # everything the index holds
    assert 'data-testid="page-2"' in html
    assert 'data-testid="page-next"' in html
    assert re.search(r'data-testid="facet-status">\s*disabled <span[^>]*>15</span>', html)

    second = dana.get(f"{LISTS}/enrollments/", {"q": stem, "page": 2})
    assert _ids(second) == [f"{stem}-{i:02d}" for i in range(25, 30)]

    # Device ids too, prefix and substring; filters combine; every filter lives in the URL.
    by_device = dana.get(f"{LISTS}/enrollments/", {"q": f"{stem}-device-1", "match": "prefix"})
    assert _ids(by_device) == [f"{stem}-{i:02d}" for i in range(10, 20)]
    middle = stem.split("-", 1)[1]  # the unique part, without the leading word
    inside = dana.get(f"{LISTS}/enrollments/", {"q": f"{middle}-device-0", "match": "contains"})
    assert _ids(inside) == [f"{stem}-{i:02d}" for i in range(10)]
    both = dana.get(f"{LISTS}/enrollments/", {"q": stem, "status": "disabled", "tag": "line=a"})
    assert _ids(both) == [f"{stem}-{i:02d}" for i in (1, 3, 5, 7, 9)]
    # The facets are disjunctive: the chosen status still shows the other one's count.
    assert both.context["page"].facets["status"] == {"disabled": 5, "enabled": 5}

    # Sortable columns: a header links to its order, and a second click reverses it.
    descending = dana.get(f"{LISTS}/enrollments/", {"q": stem, "sort": "-id"})
    assert _ids(descending)[0] == f"{stem}-29"
    assert 'href="?q=' in descending.content.decode()
    newest = dana.get(f"{LISTS}/enrollments/", {"q": stem, "sort": "-updated"})
    assert _ids(newest)[0] == f"{stem}-29"

    bad = dana.get(f"{LISTS}/enrollments/", {"tag": "no-equals-sign"})
    assert bad.status_code == 400
    assert b'data-testid="filter-error"' in bad.content


@pytest.mark.parametrize("path", ["live", "stored"])
def test_facets_count_the_other_values_of_a_chosen_filter(
    prod: DpsInstance, seed: Any, signed_in: Any, path: str
) -> None:
    """Each facet counts with every other filter but its own, equal to a direct count."""
    stem = unique("facets")
    for i in range(12):
        seed.enrollment(
            f"{stem}-{i:02d}",
            initial_twin=InitialTwin.of(tags={"facetbatch": stem}),
            provisioning_status="disabled" if i % 3 == 0 else "enabled",
            capabilities=DeviceCapabilities(iot_edge=i % 2 == 0),
        )
    run_pass(prod)
    # A search is counted on the rows; a single tag from the counts kept at each pass.
    where = {"q": stem} if path == "live" else {"tag": f"facetbatch={stem}"}
    assert "facetbatch" in (facets.tag_keys_of(prod, "enrollment") or [])
    dana = signed_in("dana")

    response = dana.get(
        f"{LISTS}/enrollments/", {**where, "status": "disabled", "iot_edge": "true"}
    )
    assert response.status_code == 200
    page = response.context["page"]
    assert sorted(r.record_id for r in page.rows) == [f"{stem}-00", f"{stem}-06"]
    assert page.total == 2
    assert page.facets["status"] == {"disabled": 2, "enabled": 4}
    assert page.facets["iot_edge"] == {"true": 2, "false": 2}
    assert page.facets["attestation"] == {"symmetricKey": 2}
    # The same figures counted directly: each facet value with the other chosen filter.
    rows = IndexedRecord.objects.filter(instance=prod, kind="enrollment", tags__facetbatch=stem)
    for status, n in page.facets["status"].items():
        assert rows.filter(iot_edge=True, status=status).count() == n
    for edge, n in page.facets["iot_edge"].items():
        assert rows.filter(status="disabled", iot_edge=edge == "true").count() == n
    assert rows.filter(status="disabled", iot_edge=True).count() == page.total

    html = response.content.decode()
    assert re.search(r'data-testid="facet-status">\s*enabled <span[^>]*>4</span>', html)
    edge = re.search(r'data-testid="facet-iot_edge">(.*?)</div>', html, re.S)
    assert edge is not None
    assert "Edge <span" in edge.group(1)
    assert "Not Edge <span" in edge.group(1)
    assert "true" not in edge.group(1)

    # A chosen value that matches nothing still shows, with 0, beside the others.
    none = dana.get(f"{LISTS}/enrollments/", {**where, "attestation": "tpm"})
    assert none.context["page"].total == 0
    assert none.context["page"].facets["attestation"] == {"symmetricKey": 12, "tpm": 0}


def test_index_rows_keep_the_live_rows_features(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    """Status toggle with the row's ETag, the selection checkbox, the select-matching context."""
    record = seed.enrollment(unique("feat"), provisioning_status="disabled")
    run_pass(prod)
    dana = signed_in("dana")
    response = dana.get(f"{LISTS}/enrollments/", {"q": record.registration_id, "page": 1})
    html = response.content.decode()
    rid = record.registration_id
    assert f'data-testid="toggle-{rid}"' in html
    assert 'name="status" value="enabled"' in html
    assert f'name="etag" value="{record.etag.replace(chr(34), "&quot;")}"' in html
    assert f'data-testid="select-{rid}"' in html
    assert 'id="delete-selected-form"' in html
    ctx = response.context
    assert ctx["matching_total"] == 1
    assert ctx["query_string"] == f"q={rid}"  # the filters, without the page or the order
    assert ctx["record_kind"] == "enrollment"


def test_group_list_and_registration_list_from_the_index(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    stem = unique("glist")
    group = seed.group(f"{stem}-group").enrollment_group_id
    devices = [f"{stem}-dev-{i:02d}" for i in range(27)]
    for device in devices:
        seed.registration(device, group)
    run_pass(prod)
    dana = signed_in("dana")

    groups = dana.get(f"{LISTS}/groups/", {"q": stem})
    assert _ids(groups) == [group]
    assert b'data-testid="delete-selected"' not in groups.content

    regs = dana.get(f"{LISTS}/groups/{group}/registrations/")
    assert regs.status_code == 200
    assert regs.context["page"].total == 27
    assert [r["record"].registration_id for r in regs.context["rows"]] == devices[:25]
    assert b'data-testid="fleet-banner"' not in regs.content
    assert b'data-testid="select-' in regs.content  # delete selected stays
    last = dana.get(f"{LISTS}/groups/{group}/registrations/", {"page": 2, "sort": "id"})
    assert [r["record"].registration_id for r in last.context["rows"]] == devices[25:]
    found = dana.get(f"{LISTS}/groups/{group}/registrations/", {"q": "dev-1", "match": "contains"})
    assert {r["record"].registration_id for r in found.context["rows"]} == set(devices[10:20])
    assigned = dana.get(f"{LISTS}/groups/{group}/registrations/", {"status": "assigned"})
    assert assigned.context["page"].facets["status"] == {"assigned": 27}
    none = dana.get(f"{LISTS}/groups/{group}/registrations/", {"status": "failed"})
    assert none.context["page"].total == 0
    assert b'data-testid="empty-list"' in none.content
    reverse = dana.get(f"{LISTS}/groups/{group}/registrations/", {"sort": "-id"})
    assert reverse.context["rows"][0]["record"].registration_id == devices[-1]


def test_every_registration_record_of_the_instance_in_one_list(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    """Groups' and individual enrollments' records together: a list only the index can give."""
    stem = unique("allreg")
    group = seed.group(f"{stem}-group").enrollment_group_id
    grouped = [f"{stem}-dev-{i}" for i in range(3)]
    for device in grouped:
        seed.registration(device, group)
    single = seed.enrollment(f"{stem}-single").registration_id
    seed.registration(single)
    run_pass(prod)
    dana = signed_in("dana")

    every = dana.get(f"{LISTS}/registrations/", {"q": stem})
    assert every.status_code == 200
    assert every.context["page"].total == 4
    assert {r["record"].registration_id for r in every.context["rows"]} == {*grouped, single}
    body = every.content.decode()
    assert f"group {group.lower()}" in body
    assert "individual" in body
    assert f'href="/dps/{INSTANCE}/registrations/{single}/"' in body
    assert f'href="/dps/{INSTANCE}/registrations/{grouped[0]}/?group={group.lower()}"' in body
    assert f'data-testid="select-{single}"' in body  # Dana may delete registration records
    assert 'data-testid="tab-registrations"' in body
    by_group = dana.get(f"{LISTS}/registrations/", {"q": stem, "sort": "group"})
    assert by_group.context["rows"][0]["record"].registration_id == single  # "" sorts first
    hub = every.context["rows"][0]["record"].assigned_hub
    assert hub
    on_hub = dana.get(f"{LISTS}/registrations/", {"q": stem, "hub": hub.upper()})
    assert on_hub.context["page"].total == sum(
        1 for r in every.context["rows"] if r["record"].assigned_hub == hub
    )
    nowhere = dana.get(f"{LISTS}/registrations/", {"q": stem, "hub": "elsewhere.example"})
    assert nowhere.context["page"].total == 0
    assert b'data-testid="empty-list"' in nowhere.content

    # Delete selected, across a group and an individual enrollment: confirm, then each by ETag.
    rows = {r["record"].registration_id: r["record"] for r in every.context["rows"]}
    picked = [f"{rid}|{rows[rid].etag}" for rid in (single, grouped[0])]
    reader = signed_in("reggie").post(f"{LISTS}/registrations/", {"selected": picked})
    assert reader.status_code == 403  # a Reader may list them, not delete them
    confirm = dana.post(f"{LISTS}/registrations/", {"selected": picked})
    assert confirm.status_code == 200
    assert b'data-testid="confirm-delete-selected"' in confirm.content
    assert f'href="{LISTS}/registrations/"' in confirm.content.decode()  # Cancel goes back
    done = dana.post(f"{LISTS}/registrations/", {"selected": picked, "confirm": "yes"})
    assert [(r.id, r.ok) for r in done.context["results"]] == [(single, True), (grouped[0], True)]
    for rid in (single, grouped[0]):
        with pytest.raises(DpsNotFound):
            owner_client.registration_get(rid)
    empty = dana.post(f"{LISTS}/registrations/", {})
    assert (empty.status_code, empty["Location"]) == (302, f"{LISTS}/registrations/")


def test_never_synced_lists_page_dps_with_a_banner(seed: Any, signed_in: Any) -> None:
    group = seed.group().enrollment_group_id
    dana = signed_in("dana")
    for url in (
        f"{LISTS}/enrollments/",
        f"{LISTS}/groups/",
        f"{LISTS}/groups/{group}/registrations/",
        f"{LISTS}/registrations/",  # DPS cannot list these at all: the banner says so
    ):
        response = dana.get(url)
        assert response.status_code == 200
        assert b'data-testid="fleet-banner"' in response.content
        assert b'data-testid="fleet-filters"' not in response.content
        assert "indexed" not in response.context


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("/enrollments/?q=abc&status=enabled&page=2", "/enrollments/?q=abc&status=enabled&page=2"),
        ("/groups/?sort=-id", "/groups/?sort=-id"),
        ("/groups/g-1/registrations/?q=dev", "/groups/g-1/registrations/?q=dev"),
        ("/enrollments/", "/enrollments/"),
    ],
)
def test_old_index_pages_move_permanently_to_the_lists(
    prod: DpsInstance, signed_in: Any, old: str, new: str
) -> None:
    response = signed_in("reggie").get(f"{OLD}{old}")
    assert response.status_code == 301
    assert response["Location"] == f"{LISTS}{new}"


def test_refresh_goes_back_to_the_list_it_came_from(
    prod: DpsInstance, signed_in: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("fleet.tasks.fleet_sync_task.delay", lambda pk: None)
    dana = signed_in("dana")
    cases = [
        ({"kind": "enrollment"}, f"{LISTS}/enrollments/"),
        ({"kind": "group"}, f"{LISTS}/groups/"),
        ({"kind": "registration", "group": "g-1"}, f"{LISTS}/groups/g-1/registrations/"),
        ({"kind": "registration"}, f"{LISTS}/registrations/"),
    ]
    for data, where in cases:
        response = dana.post(f"{OLD}/refresh/", data)
        assert (response.status_code, response["Location"]) == (302, where)


def test_index_list_queries_do_not_grow_with_rows(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    stem = unique("qcount")
    for i in range(26):
        seed.enrollment(f"{stem}-{i:02d}")
    run_pass(prod)
    dana = signed_in("dana")
    assert dana.get(f"{LISTS}/enrollments/").status_code == 200  # tokens and capabilities
    counts = []
    for query in ({"q": f"{stem}-00"}, {"q": stem}):
        with CaptureQueriesContext(connection) as queries:
            response = dana.get(f"{LISTS}/enrollments/", query)
        assert response.status_code == 200
        counts.append(len(queries))
    assert len(response.context["rows"]) == 25
    assert counts[0] == counts[1]


def test_changed_outside_the_portal_on_the_list_and_the_detail_page(
    prod: DpsInstance, seed: Any, signed_in: Any, owner_client: Any
) -> None:
    stem = unique("drifted")
    changed = seed.enrollment(f"{stem}-changed")
    seed.enrollment(f"{stem}-quiet")
    run_pass(prod)
    dana = signed_in("dana")

    # Changed directly on DPS (SAS, not the portal): the detail page reads it live and
    # refreshes the row, leaving the change for the pass to judge.
    changed.provisioning_status = "disabled"
    after = owner_client.enrollment_put(changed, if_match=changed.etag)
    detail = dana.get(f"{LISTS}/enrollments/{changed.registration_id}/")
    assert detail.status_code == 200
    row = IndexedRecord.objects.get(instance=prod, key=changed.registration_id.lower())
    assert (row.etag, row.status) == (after.etag, "disabled")
    assert b'data-testid="drift-card"' not in detail.content  # not judged yet

    run_pass(prod)
    event = AuditEvent.objects.get(
        action=AuditAction.CHANGED_OUTSIDE_PORTAL, target_id=changed.registration_id
    )
    drifted = dana.get(f"{LISTS}/enrollments/", {"q": stem, "drifted": "on"})
    assert _ids(drifted) == [changed.registration_id]
    assert f'data-testid="drift-{changed.registration_id}"' in drifted.content.decode()

    detail = dana.get(f"{LISTS}/enrollments/{changed.registration_id}/")
    html = detail.content.decode()
    assert 'data-testid="drift-card"' in html
    assert f'href="/audit/events/{event.pk}/"' in html
    change = re.search(r'data-testid="drift-change-status">(.*?)</tr>', html, re.S)
    assert change is not None
    assert "enabled" in change.group(1)
    assert "disabled" in change.group(1)
    quiet = dana.get(f"{LISTS}/enrollments/{stem}-quiet/")
    assert b'data-testid="drift-card"' not in quiet.content


def test_changed_outside_portal_is_an_audit_action() -> None:
    assert AuditAction("changed_outside_portal").label == "Changed outside the portal"
