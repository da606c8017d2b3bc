"""Template helpers of the enrollment pages: form fields, the instance switcher, key masks,
the status cell and the rows of a record list.

The status cell and the list rows are built here with ``str.format`` rather than with a
template: a list page prints 25 to 100 rows, and the template engine's per-node cost
(variables, ``if``, ``include``, ``csrf_token``, ``date``) was most of the page's time. Every
value is escaped by :func:`_e` (what autoescaping does); only the fixed markup is trusted.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from django import template
from django.template.defaulttags import CsrfTokenNode
from django.urls import reverse
from django.utils.safestring import SafeData, SafeString, mark_safe
from django.utils.timezone import template_localtime

from instances.models import DpsInstance

register = template.Library()

_PATH_SAFE = "!$&'()*+,;=/~:@"  # what reverse() leaves unquoted in a path argument


@register.inclusion_tag("enrollments/_field.html")
def field(bound: Any, testid: str = "", show_when: str = "") -> dict[str, Any]:
    """Render one form field with its label, help and error, linked for screen readers."""
    widget = bound.field.widget
    css = widget.attrs.get("class", "")
    if bound.errors and "is-invalid" not in css:
        widget.attrs["class"] = f"{css} is-invalid".strip()
    described = []
    if bound.help_text:
        described.append(f"{bound.auto_id}_help")
    if bound.errors:
        described.append(f"{bound.auto_id}_error")
    attrs = {"data-testid": testid or f"field-{bound.name}"}
    if described:
        attrs["aria-describedby"] = " ".join(described)
    if bound.errors:
        attrs["aria-invalid"] = "true"
    is_check = widget.input_type == "checkbox" if hasattr(widget, "input_type") else False
    return {
        "bound": bound,
        "widget": bound.as_widget(attrs=attrs),
        "is_check": is_check,
        "show_when": show_when,
    }


# The enabled instances' names, read at most every few seconds per process: the switcher is
# navigation only (a disabled or removed instance answers 404 whatever the menu says), and
# the query was a fifth of a page's database time.
_SWITCHER_SECONDS = 10.0
_switcher: list[tuple[float, list[str]]] = []


def _enabled_instance_names() -> list[str]:
    now = time.monotonic()
    if _switcher and now - _switcher[0][0] < _SWITCHER_SECONDS:
        return _switcher[0][1]
    names = list(DpsInstance.objects.filter(enabled=True).values_list("name", flat=True))
    _switcher[:] = [(now, names)]
    return names


def instance_switcher_forget() -> None:
    """Read the instances again at the next page (tests; after an instance changed here)."""
    _switcher.clear()


@register.inclusion_tag("enrollments/_instance_switcher.html", takes_context=True)
def instance_switcher(
    context: template.Context, current: Any, section: str = "enrollment"
) -> dict[str, Any]:
    """Render a menu to open the same section on another registered DPS instance."""
    view = "group_list" if section == "group" else "enrollment_list"
    head, _, tail = reverse(f"enrollments:{view}", args=["--name--"]).partition("--name--")
    others = [
        {"name": name, "url": head + quote(name, safe=_PATH_SAFE) + tail}
        for name in _enabled_instance_names()
    ]
    return {"current": current, "instances": others}


@register.filter
def masked(value: str | None) -> str:
    """Return a fixed-length mask: its length says nothing about the secret."""
    return "••••••••••••" if value else ""


_BADGE = {
    True: '<span class="badge text-bg-secondary" data-testid="status-badge">Disabled</span>',
    False: '<span class="badge text-bg-success" data-testid="status-badge">Enabled</span>',
}
_CELL = (
    '<td id="{dom_id}" data-testid="status-{key}">'
    '<div class="d-flex align-items-center gap-2">{badge}{control}</div></td>'
)
_BLOCKED = (
    '<span class="small text-body-secondary" title="{}" data-testid="toggle-unavailable">'
    "edit to change</span>"
)
_TOGGLE = (
    '<form method="post" action="{url}" class="m-0" hx-post="{url}" hx-target="#{dom_id}" '
    'hx-swap="outerHTML" hx-confirm="{verb} {key}?">{csrf}'
    '<input type="hidden" name="etag" value="{etag}">'
    '<input type="hidden" name="status" value="{next}">'
    '<button type="submit" class="btn btn-link btn-sm p-0" data-testid="toggle-{key}">'
    "{verb}</button></form>"
)
_ROW = (
    '<tr data-testid="row-{key}">{select}'
    '<th scope="row" class="fw-normal"><a href="{url}" data-testid="link-{key}">{key}</a></th>'
    "{device}<td>{attestation}</td>{cell}"
    '<td class="d-none d-md-table-cell small">{hubs}</td>'
    '<td class="d-none d-lg-table-cell small text-nowrap">{updated}</td></tr>\n'
)
# The checkbox belongs to the delete-selected form below the table (HTML's form attribute),
# since each row already holds its own toggle form and forms cannot nest.
_SELECT = (
    '<td><input class="form-check-input" type="checkbox" form="delete-selected-form" '
    'name="selected" value="{value}" aria-label="Select {key}" data-testid="select-{key}"></td>'
)
_DEVICE = "<td>{}</td>"
_SAME_AS_ID = '<td><span class="text-body-secondary">= registration ID</span></td>'
_ALL_HUBS = '<span class="text-body-secondary">All linked hubs</span>'


def _e(value: Any) -> str:
    """Escape like Django's ``conditional_escape`` (``html.escape``; safe strings pass)."""
    if isinstance(value, SafeData):
        return str(value)
    return html.escape(str(value))


def _csrf_input(context: template.Context) -> str:
    # The {% csrf_token %} tag itself (format_html output, or "" without a token), rendered
    # once per page instead of once per row.
    return str(CsrfTokenNode().render(context))


def _status_cell(cell: dict[str, Any], csrf: str) -> str:
    disabled = cell["disabled"]
    key, dom_id = _e(cell["key"]), _e(cell["dom_id"])
    control = ""
    if cell["can_toggle"]:
        if cell["blocker"]:
            control = _BLOCKED.format(_e(cell["blocker"]))
        else:
            control = _TOGGLE.format(
                url=_e(cell["url"]),
                dom_id=dom_id,
                key=key,
                verb="Enable" if disabled else "Disable",
                next="enabled" if disabled else "disabled",
                etag=_e(cell["etag"] or ""),
                csrf=csrf,
            )
    return _CELL.format(dom_id=dom_id, key=key, badge=_BADGE[disabled], control=control)


@register.simple_tag(takes_context=True)
def status_cell(context: template.Context, cell: dict[str, Any]) -> SafeString:
    """Render the provisioning status cell (``enrollments.views.status_cell``): badge and toggle."""
    return mark_safe(_status_cell(cell, _csrf_input(context)))  # noqa: S308 - values escaped


@register.simple_tag(takes_context=True)
def record_rows(context: template.Context, rows: Iterable[dict[str, Any]], kind: Any) -> SafeString:
    """Render the ``<tr>`` of each row the list view prepared (``enrollments.views._list``)."""
    csrf = _csrf_input(context)
    out = []
    for row in rows:
        if kind.is_group:
            device = ""
        elif row["device_id"]:
            device = _DEVICE.format(_e(row["device_id"]))
        else:
            device = _SAME_AS_ID
        key, updated = _e(row["key"]), row["updated"]
        out.append(
            _ROW.format(
                key=key,
                select=_SELECT.format(value=_e(row["select"]), key=key)
                if row.get("select")
                else "",
                url=_e(row["url"]),
                device=device,
                attestation=_e(row["attestation"]),
                cell=_status_cell(row["cell"], csrf),
                hubs=_e(row["hubs"]) if row["hubs"] else _ALL_HUBS,
                # The |date:"Y-m-d H:i" of the template, without the filter machinery.
                updated=template_localtime(updated).strftime("%Y-%m-%d %H:%M") if updated else "—",
            )
        )
    return mark_safe("".join(out))  # noqa: S308 - every value above is escaped by _e()
