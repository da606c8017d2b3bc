"""Streaming CSV and JSON Lines exports of a filtered audit list (flat memory)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.selectors import AuditFilters, audit_event_iter, audit_latest_id
from audit.services import audit_record

COLUMNS = (
    "id",
    "time",
    "actor_oid",
    "actor_upn",
    "actor_name",
    "client_ip",
    "request_id",
    "task_id",
    "dps_instance",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "dps_status",
    "dps_error_code",
    "tracking_id",
    "message",
    "before",
    "after",
    "prev_hash",
    "hash",
)

# A spreadsheet runs a cell starting with these as a formula (CSV injection, OWASP).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would evaluate with an apostrophe, so it stays text."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def event_record(event: AuditEvent) -> dict[str, Any]:
    """Return the exported fields of one event as JSON-ready values."""
    return {
        "id": event.pk,
        "time": event.time.isoformat(),
        "actor_oid": event.actor_oid,
        "actor_upn": event.actor_upn,
        "actor_name": event.actor_name,
        "client_ip": event.client_ip or "",
        "request_id": event.request_id,
        "task_id": event.task_id,
        "dps_instance": event.dps_instance,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "dps_status": event.dps_status,
        "dps_error_code": event.dps_error_code,
        "tracking_id": event.tracking_id,
        "message": event.message,
        "before": event.before,
        "after": event.after,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


class _Echo:
    """A write-only file whose write() returns the line, so csv.writer yields strings."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return neutralise_cell(str(value))


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Yield the CSV header, then one line per event, every cell neutralised."""
    writer = csv.writer(_Echo())
    # The BOM lets Excel detect UTF-8; other readers skip it.
    yield "\ufeff" + writer.writerow(COLUMNS)
    for event in events:
        record = event_record(event)
        yield writer.writerow([_csv_cell(record[name]) for name in COLUMNS])


def jsonl_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Yield one JSON object per line."""
    for event in events:
        yield json.dumps(event_record(event), ensure_ascii=False, sort_keys=True) + "\n"


@dataclass(frozen=True)
class ExportFormat:
    content_type: str
    extension: str
    lines: Callable[[Iterable[AuditEvent]], Iterator[str]]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("text/csv; charset=utf-8", "csv", csv_lines),
    "jsonl": ExportFormat("application/x-ndjson; charset=utf-8", "jsonl", jsonl_lines),
}


def _filters_for_record(filters: AuditFilters) -> dict[str, str]:
    values = asdict(filters)
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else str(v or "")) for k, v in values.items()
    }


def audit_export(*, actor: Any, filters: AuditFilters, fmt: str) -> Iterator[str]:
    """Record that ``actor`` exports the filtered log, and return the export's lines.

    The end of the export is fixed before the event is recorded, so the export event is not
    in it. ``fmt`` is a key of :data:`EXPORT_FORMATS`.
    """
    up_to = audit_latest_id()
    audit_record(
        actor=actor,
        action=AuditAction.EXPORT,
        outcome=AuditOutcome.SUCCESS,
        target_type="audit_log",
        target_id=fmt,
        after={
            "format": fmt,
            "up_to_id": up_to,
            "filters": {k: v for k, v in _filters_for_record(filters).items() if v},
        },
    )
    return EXPORT_FORMATS[fmt].lines(audit_event_iter(filters, up_to_id=up_to))
