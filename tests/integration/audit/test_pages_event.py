"""The event page: every recorded field, the server-side before/after diff, redacted secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from audit.diff import json_diff
from audit.models import AuditAction, AuditOutcome

pytestmark = pytest.mark.django_db

BEFORE = {
    "registrationId": "dev-1",
    "provisioningStatus": "enabled",
    "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "S3cr3tPrimaryKey=="}},
    "tags": ["a", "b"],
    "floor": 2,
}
AFTER = {
    "registrationId": "dev-1",
    "provisioningStatus": "disabled",
    "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "N3wS3cr3tKey=="}},
    "tags": ["a"],
    "building": "B",
}


def test_json_diff_marks_each_leaf() -> None:
    rows = {r.path: (r.before, r.after, r.change) for r in json_diff(BEFORE, AFTER)}
    assert rows["registrationId"] == ("dev-1", "dev-1", "same")
    assert rows["provisioningStatus"] == ("enabled", "disabled", "changed")
    assert rows["tags[1]"] == ("b", "", "removed")
    assert rows["floor"] == ("2", "", "removed")
    assert rows["building"] == ("", "B", "added")
    assert json_diff(None, None) == []
    assert [r.change for r in json_diff(None, {"a": 1})] == ["added"]
    assert [(r.path, r.before) for r in json_diff("x", None)] == [("(value)", "x")]


def test_event_page_shows_fields_and_a_redacted_diff(
    auditor_client: Client, record: Any, admin: Any
) -> None:
    event = record(
        actor=admin,
        action=AuditAction.ENROLLMENT_UPDATE,
        outcome=AuditOutcome.FAILED,
        dps_instance="dps-a",
        target_type="enrollment",
        target_id="dev-1",
        dps_status=412,
        dps_error_code="412001",
        tracking_id="trk-42",
        before=BEFORE,
        after=AFTER,
        message="<script>alert(1)</script>",
    )
    body = auditor_client.get(f"/audit/events/{event.pk}/").content.decode()
    assert "S3cr3t" not in body
    assert "N3wS3cr3t" not in body
    assert "[REDACTED]" in body
    changes = dict(
        re.findall(
            r'data-testid="diff-row" data-change="(\w+)">\s*<th scope="row"[^>]*>([^<]+)', body
        )
    )
    assert set(changes) == {"same", "changed", "removed", "added"}
    assert "HTTP 412" in body
    assert "errorCode 412001" in body
    assert "trk-42" in body
    assert event.hash in body
    assert 'href="/audit/targets/dps-a/enrollment/dev-1/"' in body
    assert 'href="/audit/actors/oid-ada/"' in body
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_event_without_data_says_so(auditor_client: Client, record: Any) -> None:
    event = record(action=AuditAction.SIGNIN_FAILED, outcome=AuditOutcome.FAILED)
    body = auditor_client.get(f"/audit/events/{event.pk}/").content.decode()
    assert 'data-testid="event-no-diff"' in body
    assert "anonymous" in body
