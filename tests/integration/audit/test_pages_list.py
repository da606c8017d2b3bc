"""The event list: filters, search, keyset pagination newest first, histories, the chart."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditOutcome

pytestmark = pytest.mark.django_db

_ROW = re.compile(r'data-testid="audit-row" data-event-id="(\d+)"')


def ids_on(response: Any) -> list[int]:
    assert response.status_code == 200
    return [int(i) for i in _ROW.findall(response.content.decode())]


def link(response: Any, testid: str, base: str = "/audit/") -> str | None:
    """Return the href of the element with ``testid``, resolved against ``base``."""
    match = re.search(rf'href="([^"]+)" data-testid="{testid}"', response.content.decode())
    return urljoin(base, match.group(1).replace("&amp;", "&")) if match else None


@pytest.fixture
def mixed(record: Any, admin: Any, auditor: Any, days_ago: Any) -> dict[str, Any]:
    """Six events that differ in exactly one filtered field each."""
    return {
        "old": record(actor=admin, dps_instance="dps-a", at=days_ago(40), message="old one"),
        "by_auditor": record(actor=auditor, action=AuditAction.EXPORT, dps_instance="dps-a"),
        "other_dps": record(
            actor=admin, dps_instance="dps-b", target_type="enrollment", target_id="dev-9"
        ),
        "denied": record(actor=admin, outcome=AuditOutcome.DENIED, dps_instance="dps-a"),
        "target": record(
            actor=admin, dps_instance="dps-a", target_type="enrollment", target_id="dev-1"
        ),
        "anon": record(
            action=AuditAction.SIGNIN_FAILED,
            outcome=AuditOutcome.FAILED,
            actor_upn="mallory@evil.example",
            message="bad_password for 50% of_tries",
        ),
    }


def test_unfiltered_list_is_newest_first(auditor_client: Client, mixed: dict[str, Any]) -> None:
    shown = ids_on(auditor_client.get("/audit/"))
    expected = [e.pk for e in sorted(mixed.values(), key=lambda e: (e.time, e.pk), reverse=True)]
    assert shown == expected
    assert shown[-1] == mixed["old"].pk


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"actor": "oid-audrey"}, {"by_auditor"}),
        ({"actor": "mallory@evil.example"}, {"anon"}),
        ({"action": "export"}, {"by_auditor"}),
        ({"dps_instance": "dps-b"}, {"other_dps"}),
        ({"target_type": "enrollment", "target_id": "dev-1"}, {"target"}),
        ({"outcome": "denied"}, {"denied"}),
        ({"outcome": "failed"}, {"anon"}),
        ({"q": "MALLORY"}, {"anon"}),
        ({"q": "50%"}, {"anon"}),  # LIKE wildcards are searched literally
        ({"q": "dev-9"}, {"other_dps"}),
    ],
)
def test_each_filter_narrows_the_list(
    auditor_client: Client, mixed: dict[str, Any], params: dict[str, str], keys: set[str]
) -> None:
    shown = set(ids_on(auditor_client.get("/audit/", params)))
    assert shown == {mixed[k].pk for k in keys}


def test_wildcards_in_search_text_are_literal(
    auditor_client: Client, mixed: dict[str, Any]
) -> None:
    """``%`` and ``_`` match only themselves: only the anon message holds "50%" and "of_tries"."""
    assert ids_on(auditor_client.get("/audit/", {"q": "%"})) == [mixed["anon"].pk]
    assert ids_on(auditor_client.get("/audit/", {"q": "f_t"})) == [mixed["anon"].pk]
    assert ids_on(auditor_client.get("/audit/", {"q": "f%t"})) == []


def test_time_range_filter(auditor_client: Client, mixed: dict[str, Any], days_ago: Any) -> None:
    since = days_ago(41).strftime("%Y-%m-%dT%H:%M")
    until = days_ago(30).strftime("%Y-%m-%dT%H:%M")
    assert ids_on(auditor_client.get("/audit/", {"since": since, "until": until})) == [
        mixed["old"].pk
    ]
    recent = ids_on(auditor_client.get("/audit/", {"since": until}))
    assert mixed["old"].pk not in recent
    assert len(recent) == 5


def test_invalid_filters_are_reported_and_ignored(
    auditor_client: Client, mixed: dict[str, Any]
) -> None:
    response = auditor_client.get(
        "/audit/", {"since": "yesterday-ish", "outcome": "maybe", "action": "signin' OR 1=1"}
    )
    assert len(ids_on(response)) == 6
    body = response.content.decode()
    assert 'data-testid="filter-errors"' in body
    assert "since:" in body
    assert "outcome:" in body
    assert "action:" in body


def test_reversed_range_is_an_error(auditor_client: Client, mixed: dict[str, Any]) -> None:
    response = auditor_client.get(
        "/audit/", {"since": "2026-02-01T00:00", "until": "2026-01-01T00:00"}
    )
    assert "The end of the range must be after its start." in response.content.decode()


def test_keyset_pages_cover_every_event_once_without_offset(
    auditor_client: Client, record: Any, admin: Any, days_ago: Any
) -> None:
    # Equal timestamps in pairs: the id tie-break must keep pages exact.
    written = []
    for i in range(65):
        written.append(record(actor=admin, at=days_ago(1 + i // 2), message=f"m{i}").pk)
    seen: list[int] = []
    url: str | None = "/audit/?actor=oid-ada"
    pages = 0
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = auditor_client.get(url)
            page_ids = ids_on(response)
            assert len(page_ids) <= 50
            seen += page_ids
            url = link(response, "page-older")
            pages += 1
    assert pages == 2
    assert sorted(seen) == sorted(written)
    assert len(seen) == len(set(seen))
    assert all("OFFSET" not in q["sql"].upper() for q in queries.captured_queries)
    # Back to the newer page from the second one.
    second = auditor_client.get(
        "/audit/?actor=oid-ada&before="
        + link(auditor_client.get("/audit/?actor=oid-ada"), "page-older").split("before=")[1]
    )
    newer = link(second, "page-newer")
    assert newer is not None
    assert ids_on(auditor_client.get(newer)) == seen[:50]


def test_pager_links_keep_the_filters(auditor_client: Client, record: Any, admin: Any) -> None:
    for _ in range(51):
        record(actor=admin, dps_instance="dps-a")
    record(actor=admin, dps_instance="dps-b")
    older = link(auditor_client.get("/audit/", {"dps_instance": "dps-a"}), "page-older")
    assert older is not None
    assert "dps_instance=dps-a" in older
    assert len(ids_on(auditor_client.get(older))) == 1


def test_garbage_cursor_gives_the_first_page(auditor_client: Client, mixed: dict[str, Any]) -> None:
    assert len(ids_on(auditor_client.get("/audit/", {"before": "%%%not-base64"}))) == 6
    assert len(ids_on(auditor_client.get("/audit/", {"before": "bm9wZXxub3Bl"}))) == 6


def test_list_page_query_count_does_not_grow_with_rows(
    auditor_client: Client, record: Any, admin: Any, django_assert_max_num_queries: Any
) -> None:
    for _ in range(60):
        record(actor=admin, dps_instance="dps-a", target_type="enrollment", target_id="d")
    with django_assert_max_num_queries(6):
        auditor_client.get("/audit/")


def test_target_history_shows_only_that_target(
    auditor_client: Client, mixed: dict[str, Any], record: Any, admin: Any
) -> None:
    same_id_other_dps = record(
        actor=admin, dps_instance="dps-b", target_type="enrollment", target_id="dev-1"
    )
    response = auditor_client.get("/audit/targets/dps-a/enrollment/dev-1/")
    assert ids_on(response) == [mixed["target"].pk]
    assert same_id_other_dps.pk not in ids_on(response)
    assert "History of enrollment dev-1" in response.content.decode()


def test_actor_activity(auditor_client: Client, mixed: dict[str, Any]) -> None:
    response = auditor_client.get("/audit/actors/oid-audrey/")
    assert ids_on(response) == [mixed["by_auditor"].pk]
    assert "Activity of Audrey Person" in response.content.decode()
    assert ids_on(auditor_client.get("/audit/actors/nobody/")) == []


def test_rows_link_to_actor_target_and_event(auditor_client: Client, mixed: dict[str, Any]) -> None:
    body = auditor_client.get(
        "/audit/", {"dps_instance": "dps-a", "target_id": "dev-1"}
    ).content.decode()
    assert 'href="/audit/actors/oid-ada/"' in body
    assert 'href="/audit/targets/dps-a/enrollment/dev-1/"' in body
    assert f'href="/audit/events/{mixed["target"].pk}/"' in body


def test_chart_counts_events_per_outcome(
    auditor_client: Client, record: Any, admin: Any, days_ago: Any
) -> None:
    for _ in range(3):
        record(actor=admin, at=days_ago(2))
    record(actor=admin, outcome=AuditOutcome.DENIED, at=days_ago(2))
    record(actor=admin, outcome=AuditOutcome.FAILED, at=days_ago(5))
    record(actor=admin, at=days_ago(60))  # outside the default 30 days
    body = auditor_client.get("/audit/chart/").content.decode()
    totals = [int(t) for t in re.findall(r'data-testid="chart-bar" data-total="(\d+)"', body)]
    assert len(totals) in (30, 31)  # one bar per day
    assert sorted(t for t in totals if t) == [1, 4]
    counts = re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', body)
    assert sorted(counts) == [("denied", "1"), ("failed", "1"), ("success", "3")]
    # Filters apply to the chart too.
    denied = auditor_client.get("/audit/chart/", {"outcome": "denied"}).content.decode()
    assert re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', denied) == [("denied", "1")]
    assert "<script" not in body.split("</nav>", 1)[1]
    assert "style=" not in body


def test_chart_is_hourly_for_short_ranges(auditor_client: Client, days_ago: Any) -> None:
    body = auditor_client.get(
        "/audit/chart/",
        {
            "since": days_ago(1).strftime("%Y-%m-%dT%H:00"),
            "until": days_ago(0).strftime("%Y-%m-%dT%H:00"),
        },
    ).content.decode()
    assert "per hour" in body
    assert len(re.findall(r'data-testid="chart-bar"', body)) == 24
    assert 'data-testid="chart-empty"' in body
