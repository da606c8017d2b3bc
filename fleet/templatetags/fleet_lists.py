"""Tags of the index-backed lists: rows, sortable headers, page links, built in Python.

A list page prints up to 25 rows of ten cells, nine sortable headers and a pager: rendered
through template includes and ``{% querystring %}`` they cost more CPU than the whole rest of
the page, so they are formatted here (as enrollments_ui does for the live list's rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.http import QueryDict
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime  # type: ignore[attr-defined]  # stubs lack it

from enrollments.templatetags.enrollments_ui import csrf_input, status_cell_html
from fleet.templatetags.humanize_fleet import sort_mark, toggle

register = template.Library()

_EMPTY = mark_safe("")
_NONE = mark_safe("—")
_SELECT = (
    '<td><input class="form-check-input" type="checkbox" form="delete-selected-form" '
    'name="selected" value="{}" aria-label="Select {}" data-testid="select-{}"></td>'
)
_DRIFT = (
    ' <span class="badge text-bg-warning" title="Changed outside the portal, found {} UTC" '
    'data-testid="drift-{}">changed outside</span>'
)
_ROW = (
    '<tr data-testid="row-{key}">{select}<th scope="row" class="fw-normal text-nowrap">'
    '<a href="{url}" data-testid="link-{key}">{key}</a>{drift}</th>{device}'
    "<td>{attestation}</td>{cell}"
    '<td class="d-none d-md-table-cell small">{hubs}</td>'
    '<td class="d-none d-xl-table-cell small">{tags}</td>'
    '<td class="d-none d-lg-table-cell small text-nowrap">{expires}</td>'
    '<td class="d-none d-lg-table-cell small text-nowrap">{updated}</td>{registration}</tr>\n'
)


def _when(value: Any, fmt: str) -> str:
    return template_localtime(value).strftime(fmt) if value else "—"


def _row(row: dict[str, Any], is_group: bool, csrf: SafeString) -> SafeString:
    key = row["key"]
    if is_group:
        device, registration = _EMPTY, _EMPTY
    else:
        device = (
            format_html("<td>{}</td>", row["device_id"])
            if row["device_id"]
            else mark_safe('<td><span class="text-body-secondary">= registration ID</span></td>')
        )
        registration = format_html(
            '<td class="d-none d-lg-table-cell small">{}</td>', row["registration"] or _NONE
        )
    tags = format_html_join(", ", "{}={}", sorted((row["tags"] or {}).items()))
    return format_html(
        _ROW,
        key=key,
        select=format_html(_SELECT, row["select"], key, key) if row["select"] else _EMPTY,
        url=row["url"],
        drift=format_html(_DRIFT, _when(row["drift_at"], "%Y-%m-%d %H:%M"), key)
        if row["drift_at"]
        else _EMPTY,
        device=device,
        attestation=row["attestation"],
        cell=status_cell_html(row["cell"], csrf),
        hubs=row["hubs"] or "All linked hubs",
        tags=tags,
        expires=_when(row["expires"], "%Y-%m-%d"),
        updated=_when(row["updated"], "%Y-%m-%d %H:%M"),
        registration=registration,
    )


@register.simple_tag(takes_context=True)
def index_rows(context: template.Context, rows: Iterable[dict[str, Any]], kind: Any) -> SafeString:
    """Render the ``<tr>`` of each row enrollments.views.indexed.record_rows prepared."""
    csrf = csrf_input(context)
    return mark_safe("".join(_row(r, kind.is_group, csrf) for r in rows))  # noqa: S308 - format_html


def _query(params: QueryDict, **changes: Any) -> str:
    query = params.copy()
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    return "?" + query.urlencode()


@register.simple_tag(takes_context=True)
def sort_link(context: template.Context, column: str, label: str) -> SafeString:
    """Render a sortable column's header link: its order, reversed when already sorted by it."""
    current = str(context.get("sort") or "id")
    return format_html(
        '<a href="{}" class="link-body-emphasis text-nowrap" data-testid="sort-{}">{}{}</a>',
        _query(context["request"].GET, sort=toggle(current, column), page=None),
        column.lstrip("-"),
        label,
        sort_mark(current, column),
    )


@register.simple_tag(takes_context=True)
def page_url(context: template.Context, number: int) -> str:
    """Return the link to page ``number`` of the same list (filters and order kept)."""
    return _query(context["request"].GET, page=number)
