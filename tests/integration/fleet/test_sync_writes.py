"""How a pass writes the index fast without changing what it answers (issue 13's ingest rate).

The rows of a first pass stream into COPY; a page one of whose keys the portal wrote meanwhile
is merged instead. Device id search skips the device id where it repeats the registration id
(the partial indexes of migration 0003). A pass reads never-read states first, newest changed
first, then the longest since read.
"""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fleet import seen, sync
from fleet.models import IndexedRecord, RecordKind, SyncState
from fleet.selectors import RecordQuery, record_page, records_matching
from instances.models import DpsInstance

from .overview_fleet import (  # noqa: F401 - fixtures
    _isolated_caches,
    _record,
    dps_entry,
    dps_instances,
    owner_client,
    prod,
    seed,
    signed_in,
)

pytestmark = pytest.mark.django_db


def _doc(rid: str, etag: str, **extra: Any) -> dict[str, Any]:
    return {
        "registrationId": rid,
        "deviceId": rid,
        "attestation": {"type": "tpm"},
        "etag": etag,
        "lastUpdatedDateTimeUtc": "2026-12-01T10:00:00.1234567Z",
        **extra,
    }


def _first_pass(instance: DpsInstance) -> SyncState:
    return SyncState.objects.create(instance=instance, pass_id=1)  # never finished


def test_a_first_pass_page_streams_every_row_with_its_fields(prod: DpsInstance) -> None:
    state = _first_pass(prod)
    docs = [_doc(f"fw-new-{i}", f"e{i}", provisioningStatus="disabled") for i in range(5)]
    docs.append({"etag": "no id"})  # a document without an id is skipped, not stored

    stored = sync.apply_records(prod, state, RecordKind.ENROLLMENT, docs, timezone.now())

    assert stored == 5
    rows = IndexedRecord.objects.filter(instance=prod).order_by("key")
    assert [r.key for r in rows] == [f"fw-new-{i}" for i in range(5)]
    for row, doc in zip(rows, docs, strict=False):
        assert row.etag == doc["etag"]
        assert row.status == "disabled"
        assert row.seen_pass == 1
        assert row.drift_pending is None
        assert row.updated == dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_first_pass_page_with_a_key_the_portal_wrote_is_merged_whole(
    prod: DpsInstance,
) -> None:
    """The COPY of a page fails on a key written meanwhile; the page is merged, none lost."""
    state = _first_pass(prod)
    _record(prod, RecordKind.ENROLLMENT, "fw-race-1", etag="portal", status="enabled")
    docs = [_doc("fw-race-0", "d0"), _doc("fw-race-1", "d1", provisioningStatus="disabled")]

    stored = sync.apply_records(prod, state, RecordKind.ENROLLMENT, docs, timezone.now())

    assert stored == 2
    rows = {r.key: r for r in IndexedRecord.objects.filter(instance=prod)}
    assert set(rows) == {"fw-race-0", "fw-race-1"}
    assert rows["fw-race-1"].etag == "d1"  # the page's document replaced the written row
    assert rows["fw-race-1"].status == "disabled"
    assert rows["fw-race-0"].etag == "d0"


def test_a_later_pass_lists_unchanged_rows_without_rewriting_them(prod: DpsInstance) -> None:
    """An unchanged row keeps its row version; the page's keys say it was seen (fleet.seen)."""
    state = SyncState.objects.create(instance=prod, pass_id=2, finished_at=timezone.now())
    same = _record(prod, RecordKind.ENROLLMENT, "fw-same", etag="s1", seen_pass=1)
    _record(prod, RecordKind.ENROLLMENT, "fw-chg", etag="c1", seen_pass=1)
    _record(prod, RecordKind.ENROLLMENT, "fw-gone", etag="g1", seen_pass=1)
    _record(prod, RecordKind.GROUP, "fw-group", etag="g1", seen_pass=1)
    docs = [_doc("fw-same", "s1"), _doc("FW-CHG", "c2")]

    stored = sync.apply_records(prod, state, RecordKind.ENROLLMENT, docs, timezone.now())
    sync.apply_records(
        prod,
        state,
        RecordKind.GROUP,
        [{"enrollmentGroupId": "fw-group", "etag": "g1"}],
        timezone.now(),
    )

    assert stored == 2
    rows = {r.key: r for r in IndexedRecord.objects.filter(instance=prod)}
    assert rows["fw-same"].seen_pass == 1  # not rewritten
    assert rows["fw-same"].indexed_at == same.indexed_at
    assert (rows["fw-chg"].seen_pass, rows["fw-chg"].etag) == (2, "c2")
    # Groups are few, and the registrations phase asks which groups the pass listed.
    assert rows["fw-group"].seen_pass == 2
    unseen = seen.unseen(prod, 2, RecordKind.ENROLLMENT)
    assert sorted(unseen.values_list("key", flat=True)) == ["fw-gone"]
    assert not seen.unseen(prod, 2, RecordKind.GROUP).exists()
    assert seen.unseen(prod, 3, RecordKind.ENROLLMENT).count() == 3  # another pass saw none

    seen.forget(prod.pk, through=2)
    assert seen.unseen(prod, 2, RecordKind.ENROLLMENT).count() == 2  # only the changed one left


def test_search_finds_each_record_once_by_either_id(prod: DpsInstance) -> None:
    """A device id equal to the registration id, empty, or its own: each search finds it once."""
    _record(prod, RecordKind.ENROLLMENT, "plant-a-01", device_id="plant-a-01")
    _record(prod, RecordKind.ENROLLMENT, "plant-a-02", device_id="")
    _record(prod, RecordKind.ENROLLMENT, "plant-a-03", device_id="gateway-7")
    _record(prod, RecordKind.ENROLLMENT, "plant-b-01", device_id="PLANT-A-XY")  # case differs

    def found(text: str, match: str = "prefix") -> list[str]:
        qs = records_matching(prod, RecordKind.ENROLLMENT, RecordQuery(search=text, match=match))
        return sorted(qs.values_list("record_id", flat=True))

    assert found("plant-a") == ["plant-a-01", "plant-a-02", "plant-a-03", "plant-b-01"]
    assert found("gateway") == ["plant-a-03"]
    assert found("way-7", "contains") == ["plant-a-03"]
    assert found("a-xy", "contains") == ["plant-b-01"]
    assert found("plant-a-01") == ["plant-a-01"]
    assert found("nothing") == []


def test_an_id_prefix_sorted_by_id_is_sorted_without_walking_the_key_index(
    prod: DpsInstance,
) -> None:
    """Sorted by ``key``, PostgreSQL walked the whole key index for a short prefix (seconds)."""
    for rid in ("b-2", "B-10", "a-1", "b-1", "c-1"):
        _record(prod, RecordKind.ENROLLMENT, rid)
    with CaptureQueriesContext(connection) as queries:
        page = record_page(prod, RecordKind.ENROLLMENT, RecordQuery(search="b-", sort="id"))
    assert [r.record_id for r in page.rows] == ["b-1", "B-10", "b-2"]
    assert page.total == 3
    rows_sql = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert any('ORDER BY LOWER("fleet_indexedrecord"."key")' in sql for sql in rows_sql)
    back = record_page(prod, RecordKind.ENROLLMENT, RecordQuery(search="b-", sort="-id"))
    assert [r.record_id for r in back.rows] == ["b-2", "B-10", "b-1"]
    every = record_page(prod, RecordKind.ENROLLMENT, RecordQuery(sort="id"))
    assert [r.key for r in every.rows] == ["a-1", "b-1", "b-10", "b-2", "c-1"]


def test_a_pass_reads_never_read_states_newest_first_then_the_longest_since_read(
    prod: DpsInstance,
) -> None:
    now = timezone.now()
    day = dt.timedelta(days=1)
    for rid, updated, read in (
        ("st-old-unread", now - 9 * day, None),
        ("st-new-unread", now - day, None),
        ("st-read-long-ago", now - day, now - 5 * day),
        ("st-read-lately", now - 8 * day, now - day),
    ):
        _record(prod, RecordKind.ENROLLMENT, rid, updated=updated, registration_read_at=read)
    _record(prod, RecordKind.GROUP, "st-a-group", updated=now)  # groups have no state to read

    order = [rid for _, rid in sync._state_targets(prod, 10)]
    assert order == ["st-new-unread", "st-old-unread", "st-read-long-ago", "st-read-lately"]
    assert [rid for _, rid in sync._state_targets(prod, 3)] == order[:3]
    assert [rid for _, rid in sync._state_targets(prod, 1)] == order[:1]


def test_tag_keys_with_too_many_values_are_not_counted(
    prod: DpsInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet import facets

    monkeypatch.setattr(facets, "MAX_TAG_VALUES", 2)
    SyncState.objects.create(instance=prod, pass_id=1)
    for i, plant in enumerate(("1", "2", "2")):
        _record(prod, RecordKind.ENROLLMENT, f"tk-{i}", tags={"plant": plant, "serial": f"s{i}"})

    assert facets.rebuild(prod, RecordKind.ENROLLMENT) == ["plant"]  # serial has 3 values
    assert facets.counted(prod, RecordKind.ENROLLMENT, tag=("plant", "2"))[0] == 2
    assert facets.counted(prod, RecordKind.ENROLLMENT, tag=("serial", "s0")) is None


def test_an_instance_deleted_takes_its_index_rows_along(prod: DpsInstance) -> None:
    """The rows have no database constraint (migration 0004); Django's cascade deletes them."""
    from fleet.models import IndexedRegistration

    _record(prod, RecordKind.ENROLLMENT, "gone-with-1")
    IndexedRegistration.objects.create(instance=prod, key="gone-reg", registration_id="gone-reg")
    other = DpsInstance.objects.exclude(pk=prod.pk).first()
    assert other is not None
    _record(other, RecordKind.ENROLLMENT, "stays-1")

    pk = prod.pk
    prod.delete()

    assert not IndexedRecord.objects.filter(instance_id=pk).exists()
    assert not IndexedRegistration.objects.filter(instance_id=pk).exists()
    assert IndexedRecord.objects.filter(instance=other).count() == 1


@pytest.mark.parametrize(
    ("caps", "offered"),
    [({"enrollments.read", "enrollmentgroups.read"}, True), ({"enrollmentgroups.read"}, False)],
)
def test_refresh_now_is_offered_only_to_readers_of_enrollments(
    prod: DpsInstance, caps: set[str], offered: bool
) -> None:
    """The refresh view asks for enrollment read: a groups-only reader gets no button to 403."""
    from django.template.loader import render_to_string

    from authn.permissions import Capability

    html = render_to_string(
        "fleet/_age.html",
        {
            "instance": prod,
            "sync": None,
            "caps": {Capability(c) for c in caps},
            "refresh_kind": RecordKind.GROUP,
        },
    )
    assert ('data-testid="fleet-refresh"' in html) is offered
