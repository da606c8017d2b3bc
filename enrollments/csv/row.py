"""One record of an import as the importer sees it, and how its errors are collected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.exceptions import ValidationError

#: One error of a row: ``{"column": <column or "">, "message": <sentence>}``.
RowError = dict[str, str]

T = TypeVar("T")


@dataclass
class ParsedRow:
    """One record of the file, as the importer sees it."""

    line_no: int
    registration_id: str
    operation: str
    payload: dict[str, Any] | None
    errors: list[RowError] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)


def add_error(errors: list[RowError], column: str, message: str) -> None:
    """Record an error of ``column`` ("" for the row as a whole)."""
    errors.append({"column": column, "message": message})


def check(
    errors: list[RowError], column: str, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T | None:
    """Return ``fn(*args, **kwargs)``; on a ValidationError record it for ``column``, return None."""
    try:
        return fn(*args, **kwargs)
    except ValidationError as exc:
        errors.append({"column": column, "message": " ".join(exc.messages)})
        return None


def refused_row(line_no: int, message: str, default_operation: str) -> ParsedRow:
    """Return the row of a record that could not be read at all."""
    return ParsedRow(line_no, "", default_operation, None, [{"column": "", "message": message}])
