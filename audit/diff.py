"""Flatten JSON documents to dotted paths and diff them field by field.

One flattening serves the audit event page (:func:`json_diff`) and the enrollment conflict
page (:func:`enrollments.edit_rules.diff_rows`).
"""

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


def flatten(value: Any, prefix: str = "", *, split_lists: bool = True) -> dict[str, Any]:
    """Map dotted paths (``attestation.type``, ``tags[0]``) to leaf values.

    With ``split_lists`` false a list is one leaf, compared as a whole.
    """
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten(item, path, split_lists=split_lists))
        return out
    if split_lists and isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]", split_lists=split_lists))
        return out
    return {prefix or "(value)": value}


def show(value: Any, *, ensure_ascii: bool = False) -> str:
    """Return a leaf as text: strings as they are, anything else as sorted JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=True)


_MISSING = object()


def json_diff(before: Any, after: Any) -> list[DiffRow]:
    """Return one row per leaf path in either document, in a stable order."""
    if before is None and after is None:
        return []
    left = flatten(before) if before is not None else {}
    right = flatten(after) if after is not None else {}
    paths = list(left) + [p for p in right if p not in left]
    rows = []
    for path in paths:
        old = left.get(path, _MISSING)
        new = right.get(path, _MISSING)
        if old is _MISSING:
            rows.append(DiffRow(path, "", show(new), "added"))
        elif new is _MISSING:
            rows.append(DiffRow(path, show(old), "", "removed"))
        elif old == new:
            rows.append(DiffRow(path, show(old), show(new), "same"))
        else:
            rows.append(DiffRow(path, show(old), show(new), "changed"))
    return rows
