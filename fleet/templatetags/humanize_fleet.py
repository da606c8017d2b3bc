"""Small filters of the fleet pages: thousands separators, facet lists, sort toggles."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def thousands(value: Any) -> str:
    """Return 12345 as "12,345"."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def facet(facets: dict[str, dict[str, int]], name: str) -> list[tuple[str, int]]:
    """Return one facet's (value, count) pairs, largest first."""
    return sorted((facets.get(name) or {}).items(), key=lambda kv: (-kv[1], kv[0]))


@register.filter
def toggle(current: str, column: str) -> str:
    """Return the sort a column header links to: its own, reversed when already sorted by it."""
    base = column.lstrip("-")
    if current.lstrip("-") == base:
        return base if current.startswith("-") else f"-{base}"
    return column
