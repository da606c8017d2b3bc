"""CSV and JSON Lines exports: streamed, filtered, formula cells neutralised, audited."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client

from audit.exports import neutralise_cell
from audit.models import AuditAction, AuditEvent, AuditOutcome

pytestmark = pytest.mark.django_db

HOSTILE = {
    "=": '=HYPERLINK("http://evil.example","click")',
    "+": "+1+2",
    "-": "-2+3",
    "@": "@SUM(A1:A9)",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
}


def body_of(response: Any) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_neutralise_prefixes_formula_starts(value: str) -> None:
    assert neutralise_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["dev-1", "", "a=b", "1+1", "'quoted", "café"])
def test_neutralise_leaves_ordinary_text(value: str) -> None:
    assert neutralise_cell(value) == value


def test_csv_neutralises_every_hostile_cell(
    auditor_client: Client, record: Any, admin: Any
) -> None:
    for value in HOSTILE.values():
        record(
            actor_upn=value,
            actor_name=value,
            action=AuditAction.SIGNIN_FAILED,
            outcome=AuditOutcome.FAILED,
            target_type="enrollment",
            target_id=value,
            message=value,
        )
    response = auditor_client.get("/audit/export/csv/", {"action": "signin_failed"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    text = body_of(response)
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == len(HOSTILE)
    for row in rows:
        for column in ("actor_upn", "actor_name", "target_id", "message"):
            cell = row[column]
            assert cell.startswith("'"), (column, cell)
            assert cell[1:] in HOSTILE.values()
    # No cell of any column starts with a formula character.
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values())


def test_csv_json_cells_and_negative_numbers_are_neutralised(
    auditor_client: Client, record: Any
) -> None:
    record(after={"delta": -5}, message="-5")
    rows = list(
        csv.DictReader(
            io.StringIO(body_of(auditor_client.get("/audit/export/csv/")).lstrip("\ufeff"))
        )
    )
    event_row = next(r for r in rows if r["action"] == "enrollment_update")
    assert event_row["message"] == "'-5"
    assert json.loads(event_row["after"]) == {"delta": -5}


def test_jsonl_keeps_values_exact_one_object_per_line(
    auditor_client: Client, record: Any, admin: Any
) -> None:
    written = [
        record(actor=admin, dps_instance="dps-a", target_id=HOSTILE["="], after={"k": i})
        for i in range(3)
    ]
    response = auditor_client.get("/audit/export/jsonl/", {"dps_instance": "dps-a"})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = body_of(response).splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["id"] for o in objects] == [e.pk for e in reversed(written)]  # newest first
    assert objects[0]["target_id"] == HOSTILE["="]  # JSON is data, not a spreadsheet
    assert objects[0]["hash"] == written[-1].hash
    assert objects[0]["after"] == {"k": 2}


def test_export_applies_filters(
    auditor_client: Client, record: Any, admin: Any, auditor: Any
) -> None:
    record(actor=admin, outcome=AuditOutcome.DENIED)
    record(actor=auditor)
    lines = body_of(auditor_client.get("/audit/export/jsonl/", {"outcome": "denied"})).splitlines()
    assert [json.loads(line)["actor_upn"] for line in lines] == ["ada@contoso.example"]


def test_export_is_audited_and_excludes_itself(
    auditor_client: Client, record: Any, admin: Any
) -> None:
    record(actor=admin, dps_instance="dps-a")
    response = auditor_client.get("/audit/export/csv/", {"dps_instance": "dps-a", "q": "ada"})
    event = AuditEvent.objects.filter(action=AuditAction.EXPORT).get()
    assert (event.actor_upn, event.outcome, event.target_type, event.target_id) == (
        "audrey@contoso.example",
        AuditOutcome.SUCCESS,
        "audit_log",
        "csv",
    )
    assert event.after["filters"] == {"dps_instance": "dps-a", "q": "ada"}
    # Unfiltered export written after: holds the first export's event but not its own.
    body_of(response)
    second = auditor_client.get("/audit/export/jsonl/")
    ids = [json.loads(line)["id"] for line in body_of(second).splitlines()]
    newest_export = AuditEvent.objects.filter(action=AuditAction.EXPORT).latest("id")
    assert event.pk in ids
    assert newest_export.pk not in ids


def test_export_streams_lazily_in_chunks(
    auditor_client: Client, record: Any, admin: Any, monkeypatch: Any
) -> None:
    """The response is a generator over a chunked iterator; no row is read before iteration."""
    from django.db.models.query import QuerySet

    from audit import exports

    for _ in range(5):
        record(actor=admin)
    chunk_sizes: list[int | None] = []
    rendered: list[int] = []
    real_iterator = QuerySet.iterator
    real_record = exports.event_record

    def spy_iterator(self: QuerySet[Any], chunk_size: int | None = None) -> Any:
        chunk_sizes.append(chunk_size)
        return real_iterator(self, chunk_size=chunk_size)

    def spy_record(event: AuditEvent) -> dict[str, Any]:
        rendered.append(event.pk)
        return real_record(event)

    monkeypatch.setattr(QuerySet, "iterator", spy_iterator)
    monkeypatch.setattr(exports, "event_record", spy_record)
    response = auditor_client.get("/audit/export/csv/")
    assert response.streaming
    assert chunk_sizes == [2000]
    assert rendered == []  # the view returned before reading a single row
    parts = list(response.streaming_content)
    assert len(rendered) == 5  # the export's own event is not part of it
    assert len(parts) == 1 + 5  # header, then one chunk per event: nothing is buffered
