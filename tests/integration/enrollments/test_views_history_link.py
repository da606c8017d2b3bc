"""Detail pages link to the record's audit history for admins and auditors only."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"


def test_admin_sees_the_history_link_and_it_opens(signed_in: Any, seed: Any) -> None:
    """Ada (Portal.Admin) gets a History button that lands on the enrollment's audit trail."""
    record = seed.enrollment()
    client = signed_in("ada")
    html = client.get(f"{BASE}/enrollments/{record.registration_id}/").content.decode()
    href = f"/audit/targets/{INSTANCE}/enrollment/{record.registration_id}/"
    assert f'href="{href}" data-testid="history-button"' in html
    assert client.get(href).status_code == 200


def test_group_history_link_uses_the_group_target_type(signed_in: Any, seed: Any) -> None:
    """Groups link to the enrollment_group target type the services record."""
    group = seed.group()
    html = signed_in("ada").get(f"{BASE}/groups/{group.enrollment_group_id}/").content.decode()
    assert f"/audit/targets/{INSTANCE}/enrollment_group/{group.enrollment_group_id}/" in html


def test_contributor_without_audit_role_gets_no_history_link(signed_in: Any, seed: Any) -> None:
    """Dana may edit the record but may not read the audit log: no link."""
    record = seed.enrollment()
    html = signed_in("dana").get(f"{BASE}/enrollments/{record.registration_id}/").content.decode()
    assert 'data-testid="history-button"' not in html
