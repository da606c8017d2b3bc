"""Small filters of the fleet pages: thousands separators, facet lists, sort toggles."""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def thousands(value: Any) -> str:
    """Return 12345 as "12,345"."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


#: How a facet's stored values read beside its filter (others read as they are).
FACET_LABELS = {"iot_edge": {"true": "Edge", "false": "Not Edge"}}


@register.filter
def facet(facets: dict[str, dict[str, int]], name: str) -> list[tuple[str, int]]:
    """Return one facet's (label, count) pairs, largest first."""
    labels = FACET_LABELS.get(name, {})
    counts = sorted((facets.get(name) or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return [(labels.get(value, value), n) for value, n in counts]


@register.filter
def toggle(current: str, column: str) -> str:
    """Return the sort a column header links to: its own, reversed when already sorted by it."""
    base = column.lstrip("-")
    if current.lstrip("-") == base:
        return base if current.startswith("-") else f"-{base}"
    return column


@register.filter
def sort_mark(current: str, column: str) -> str:
    """Return the arrow of a column header: ▲ ascending, ▼ descending, "" when not sorted by it."""
    base = column.lstrip("-")
    if current == base:
        return " ▲"
    return " ▼" if current == f"-{base}" else ""


@register.filter
def page_window(page: Any, width: int = 2) -> list[int | None]:
    """Return the page numbers a pager shows: the first, the last, ``width`` each side of the
    current one, and None where numbers are left out."""
    current, last = int(page.page), int(page.pages)
    shown = {1, last, *range(max(1, current - width), min(last, current + width) + 1)}
    out: list[int | None] = []
    for number in sorted(shown):
        if out and number - (out[-1] or 0) > 1:
            out.append(None)
        out.append(number)
    return out


@register.filter
def control(field: Any) -> SafeString:
    """Render a filter's control (select, checkbox or input) with Bootstrap's small classes.

    Formatted here rather than through Django's widget templates: a list shows a dozen filters
    and the widget templates cost more than the page's rows.
    """
    widget, value = field.field.widget, field.value()
    attrs = {"name": field.html_name, "id": field.auto_id}
    if isinstance(widget, forms.CheckboxInput):
        return format_html(
            '<input type="checkbox" name="{name}" id="{id}" class="form-check-input"{checked}>',
            checked=mark_safe(" checked") if value not in (None, False, "", "false") else "",
            **attrs,
        )
    if isinstance(widget, forms.Select):
        chosen = "" if value is None else str(value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (v, mark_safe(" selected") if str(v) == chosen else "", label)
                for v, label in field.field.choices
            ),
        )
        return format_html(
            '<select name="{name}" id="{id}" class="form-select form-select-sm">{options}</select>',
            options=options,
            **attrs,
        )
    return format_html(
        '<input type="{kind}" name="{name}" id="{id}" value="{value}" '
        'class="form-control form-control-sm">',
        kind=getattr(widget, "input_type", "text"),
        value="" if value is None else value,
        **attrs,
    )
