"""List and detail pages: rows built without per-row URL reversal, escaped, and a fixed query count."""
# ruff: noqa: F811 - the list_source fixture is imported by name, then requested

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from enrollments.views import ENROLLMENTS, GROUPS, key_urls
from tests.integration.fleet.support import list_html, list_source  # noqa: F401 - fixture

from .conftest import INSTANCE, unique

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


class _Instance:
    name = INSTANCE


@pytest.mark.parametrize("kind", [ENROLLMENTS, GROUPS], ids=["enrollment", "group"])
@pytest.mark.parametrize("view", ["detail", "status", "edit", "delete", "reveal"])
@pytest.mark.parametrize(
    "key", ["plain-id", "with.dots_and:colons", "sp ace", "quote'\"<>&", "ünïcode", "a%2Fb"]
)
def test_key_urls_equal_reverse(kind: Any, view: str, key: str) -> None:
    """The once-reversed URL with the key quoted in is exactly what reverse() gives per row."""
    expected = reverse(f"enrollments:{kind.name}_{view}", args=[INSTANCE, key])
    assert key_urls(kind, view, _Instance())(key) == expected


def _rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-testid="row-([^"]+)">(.*?)</tr>', html, re.S))


def test_list_rows_carry_links_toggles_and_columns(
    signed_in: Any, seed: Any, list_source: Any
) -> None:
    """Each row links to its detail page and toggles through its own status URL with its etag."""
    stem = unique("rows")
    hubbed = seed.enrollment(
        f"{stem}-a", device_id="dev-1", iot_hubs=["hub-fleet-weu.azure-devices.net"]
    )
    disabled = seed.enrollment(f"{stem}-b", provisioning_status="disabled")
    list_source()
    ids = (hubbed.registration_id, disabled.registration_id)
    html = list_html(signed_in("dana"), f"{BASE}/enrollments/", stem, *ids)
    rows = _rows(html)
    row = rows[hubbed.registration_id]
    rid = hubbed.registration_id
    assert f'href="{BASE}/enrollments/{rid}/"' in row
    assert f'action="{BASE}/enrollments/{rid}/status/"' in row
    assert f'hx-target="#status-{rid}"' in row
    assert "<td>dev-1</td>" in row
    assert "hub-fleet-weu.azure-devices.net" in row
    assert f'name="etag" value="{hubbed.etag.replace(chr(34), "&quot;")}"' in row
    assert 'name="csrfmiddlewaretoken"' in row
    assert 'name="status" value="disabled"' in row
    other = rows[disabled.registration_id]
    assert "Disabled</span>" in other
    assert 'name="status" value="enabled"' in other
    assert "= registration ID" in other
    assert "All linked hubs" in other


def test_reader_rows_have_no_toggle(signed_in: Any, seed: Any, list_source: Any) -> None:
    """A Data Reader's rows show the status badge only: no form, no CSRF input, no toggle."""
    record = seed.enrollment()
    list_source()
    rid = record.registration_id
    html = list_html(signed_in("reggie"), f"{BASE}/enrollments/", rid, rid)
    row = _rows(html)[record.registration_id]
    assert 'data-testid="status-badge"' in row
    assert "<form" not in row
    assert f'data-testid="toggle-{record.registration_id}"' not in row


def test_row_and_cell_values_are_escaped() -> None:
    """Every value in a row or status cell is printed as text (DPS may relax its own checks)."""
    from django.template import Context, Template

    evil = "<script>alert(1)</script>\"'"
    cell = {
        "key": evil,
        "dom_id": "status-x",
        "disabled": False,
        "can_toggle": True,
        "blocker": "",
        "url": "/x?a=1&b=" + evil,
        "etag": evil,
    }
    row = {
        "key": evil,
        "url": "/x/" + evil,
        "device_id": evil,
        "attestation": evil,
        "hubs": evil,
        "updated": None,
        "cell": cell,
    }
    html = Template("{% load enrollments_ui %}{% record_rows rows kind %}").render(
        Context({"rows": [row], "kind": ENROLLMENTS})
    )
    html += Template("{% load enrollments_ui %}{% status_cell cell %}").render(
        Context({"cell": {**cell, "blocker": evil}})
    )
    assert "<script>" not in html
    assert "\"'" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;") == 15
    assert "a=1&amp;b=" in html


def test_group_rows_have_no_device_column(signed_in: Any, seed: Any) -> None:
    group = seed.group()
    html = signed_in("dana").get(f"{BASE}/groups/", {"size": 100}).content.decode()
    row = _rows(html)[group.enrollment_group_id]
    assert "= registration ID" not in row
    assert f'action="{BASE}/groups/{group.enrollment_group_id}/status/"' in row


# User with its Entra identity, DPS instance, the encrypted token cache (its version: the token
# itself comes from process memory), and the session unless Redis holds it. The switcher's
# instances are read at most every few seconds, capabilities come from the cache.
SESSION_QUERIES = 0 if django_settings.SESSION_ENGINE.endswith(".cached_db") else 1
# The list asks whether the instance's index is complete (one more); the detail page
# refreshes the record's index row (savepoint, SELECT … FOR UPDATE, release) and reads its
# "changed outside the portal" events (four more).
LIST_QUERIES = 4 + SESSION_QUERIES
DETAIL_QUERIES = 7 + SESSION_QUERIES


@pytest.fixture
def switcher_remembered(monkeypatch: Any) -> None:
    """Keep the switcher's instances for the whole test, so counts do not depend on timing."""
    from authn import selectors

    monkeypatch.setattr(selectors, "SWITCHER_SECONDS", 3600.0)


@pytest.mark.parametrize("size", [10, 100])
def test_list_query_count_does_not_grow_with_rows(
    signed_in: Any, seed: Any, size: int, django_assert_num_queries: Any, switcher_remembered: None
) -> None:
    """No query per row: a page of 10 and a page of 100 cost the same few queries."""
    for _ in range(3):
        seed.enrollment()
    dana = signed_in("dana")
    assert dana.get(f"{BASE}/enrollments/").status_code == 200  # tokens and capabilities
    with django_assert_num_queries(LIST_QUERIES):
        response = dana.get(f"{BASE}/enrollments/", {"size": size})
    assert response.status_code == 200
    assert len(response.context["rows"]) >= 3


def test_detail_query_count(
    signed_in: Any, seed: Any, django_assert_num_queries: Any, switcher_remembered: None
) -> None:
    record = seed.enrollment(unique("q"))
    dana = signed_in("dana")
    assert dana.get(f"{BASE}/enrollments/").status_code == 200
    with django_assert_num_queries(DETAIL_QUERIES):
        response = dana.get(f"{BASE}/enrollments/{record.registration_id}/")
    assert response.status_code == 200
    assert 'data-testid="edit-button"' in response.content.decode()


def test_one_broker_call_per_request_whatever_the_dps_calls(
    signed_in: Any, seed: Any, monkeypatch: Any
) -> None:
    """A toggle makes three DPS calls (read, attestation, write) with one token from the broker."""
    from authn import tokens

    record = seed.enrollment()
    dana = signed_in("dana")
    assert dana.get(f"{BASE}/enrollments/").status_code == 200
    calls: list[str] = []
    real = tokens.token_for_user

    def counting(user: Any, resource: str, **kw: Any) -> str:
        calls.append(resource)
        return real(user, resource, **kw)

    monkeypatch.setattr(tokens, "token_for_user", counting)
    response = dana.post(
        f"{BASE}/enrollments/{record.registration_id}/status/",
        {"status": "disabled", "etag": record.etag},
    )
    assert response.status_code == 302
    assert len(calls) == 1


def test_switcher_lists_enabled_instances_with_their_list_urls(signed_in: Any) -> None:
    """The switcher offers every enabled instance (same section), never a disabled one."""
    from authn.selectors import instance_names_forget as instance_switcher_forget
    from instances.models import DpsInstance

    DpsInstance.objects.filter(name="dps-fleet-lab").update(enabled=False)
    instance_switcher_forget()
    dana = signed_in("dana")
    html = dana.get(f"{BASE}/groups/").content.decode()
    assert f'href="/dps/{INSTANCE}/groups/"' in html
    assert 'data-testid="switch-dps-fleet-lab"' not in html
    DpsInstance.objects.filter(name="dps-fleet-lab").update(enabled=True)
    instance_switcher_forget()
    html = dana.get(f"{BASE}/enrollments/").content.decode()
    assert 'href="/dps/dps-fleet-lab/enrollments/" data-testid="switch-dps-fleet-lab"' in html
    assert f'data-testid="switch-{INSTANCE}"' in html
