"""Compare the cells of the record DPS holds with the cells a row asks for (the preview)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from enrollments.csv.columns import CERT_COLUMNS, COLUMNS, JSON_COLUMNS, KEY_COLUMNS
from enrollments.csv.export import json_text

#: Columns compared by the preview (certificates go by thumbprint; keys only when both known).
DIFF_COLUMNS = tuple(
    c for c in COLUMNS if c not in ("operation", "etag", *CERT_COLUMNS, *KEY_COLUMNS)
)
#: What DPS does when a cell is blank, so blank and the default compare equal.
_DEFAULTS = {"iotEdge": "false", "provisioningStatus": "enabled", "allocationPolicy": "hashed"}


def row_diff(
    current: Mapping[str, str], desired: Mapping[str, str], *, compare_keys: bool = False
) -> dict[str, list[str]]:
    """Return ``{column: [current, desired]}`` for every column that differs."""
    columns: Iterable[str] = DIFF_COLUMNS + (KEY_COLUMNS if compare_keys else ())
    out: dict[str, list[str]] = {}
    for column in columns:
        if column in KEY_COLUMNS and not desired.get(column):
            continue  # a blank key means "keep the key DPS holds"
        a = current.get(column, "") or _DEFAULTS.get(column, "")
        b = desired.get(column, "") or _DEFAULTS.get(column, "")
        if column in JSON_COLUMNS:
            a = _canonical_json(a)
            b = _canonical_json(b)
        if a != b:
            out[column] = [a, b]
    return out


def _canonical_json(text: str) -> str:
    if not text:
        return ""
    try:
        return json_text(json.loads(text))
    except ValueError:
        return text
