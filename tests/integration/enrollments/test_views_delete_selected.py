"""The enrollment list offers "delete selected" to those who may delete, through the bulk job."""
# ruff: noqa: F811 - the list_source fixture is imported by name, then requested

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.fleet.support import list_html, list_source  # noqa: F401 - fixture

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


def _checkbox(html: str, rid: str) -> str | None:
    match = re.search(rf'<input[^>]*data-testid="select-{re.escape(rid)}"[^>]*>', html)
    return match.group(0) if match else None


def test_contributor_rows_carry_checkboxes_bound_to_the_delete_form(
    signed_in: Any, seed: Any, list_source: Any
) -> None:
    """Each row's checkbox holds id|etag and belongs to the form that posts to the bulk job."""
    record = seed.enrollment()
    list_source()
    rid = record.registration_id
    html = list_html(signed_in("dana"), f"{BASE}/enrollments/", rid, rid)
    box = _checkbox(html, record.registration_id)
    assert box is not None
    assert 'form="delete-selected-form"' in box
    assert f'value="{record.registration_id}|{record.etag.replace(chr(34), "&quot;")}"' in box
    assert f'id="delete-selected-form" method="post" action="{BASE}/bulk/delete-selected/"' in html
    assert 'data-testid="delete-selected"' in html


@pytest.mark.parametrize("persona", ["reggie", "kim", "oscar"])
def test_roles_without_delete_get_no_selection(
    signed_in: Any, seed: Any, persona: str, list_source: Any
) -> None:
    """Reader, key reader and the no-delete operator see neither checkboxes nor the button."""
    record = seed.enrollment()
    list_source()
    rid = record.registration_id
    html = list_html(signed_in(persona), f"{BASE}/enrollments/", rid, rid)
    assert _checkbox(html, record.registration_id) is None
    assert 'data-testid="delete-selected"' not in html


def test_groups_list_has_no_selection(signed_in: Any, seed: Any, list_source: Any) -> None:
    """Bulk deletion covers individual enrollments only; the group list offers none."""
    seed.group()
    list_source()
    html = signed_in("dana").get(f"{BASE}/groups/").content.decode()
    assert 'data-testid="delete-selected"' not in html


def test_posting_the_selection_shows_the_confirmation(signed_in: Any, seed: Any) -> None:
    """The selection posted from the list lands on the bulk confirmation page, naming each id."""
    first, second = seed.enrollment(), seed.enrollment()
    response = signed_in("dana").post(
        f"{BASE}/bulk/delete-selected/",
        {
            "selected": [
                f"{first.registration_id}|{first.etag}",
                f"{second.registration_id}|{second.etag}",
            ]
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert first.registration_id in html
    assert second.registration_id in html


@pytest.mark.parametrize(("persona", "shown"), [("dana", True), ("reggie", True), ("nora", False)])
def test_bulk_tab_follows_read_capability(
    signed_in: Any, seed: Any, persona: str, shown: bool
) -> None:
    """Readers reach the bulk pages (export) from the enrollment tabs; no role, no tab."""
    response = signed_in(persona).get(f"{BASE}/enrollments/")
    html = response.content.decode()
    assert (f'href="{BASE}/bulk/jobs/" data-testid="tab-bulk"' in html) is shown
