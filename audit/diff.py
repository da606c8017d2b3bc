"""A field-by-field diff of an event's redacted before/after JSON, for the event page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DiffRow:
    path: str
    before: str
    after: str
    change: str  # "added", "removed", "changed" or "same"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Map dotted paths (``attestation.type``, ``tags[0]``) to leaf values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "(value)": value}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


_MISSING = object()


def json_diff(before: Any, after: Any) -> list[DiffRow]:
    """Return one row per leaf path in either document, in a stable order."""
    if before is None and after is None:
        return []
    left = _flatten(before) if before is not None else {}
    right = _flatten(after) if after is not None else {}
    paths = list(left) + [p for p in right if p not in left]
    rows = []
    for path in paths:
        old = left.get(path, _MISSING)
        new = right.get(path, _MISSING)
        if old is _MISSING:
            rows.append(DiffRow(path, "", _show(new), "added"))
        elif new is _MISSING:
            rows.append(DiffRow(path, _show(old), "", "removed"))
        elif old == new:
            rows.append(DiffRow(path, _show(old), _show(new), "same"))
        else:
            rows.append(DiffRow(path, _show(old), _show(new), "changed"))
    return rows
