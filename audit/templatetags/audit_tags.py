"""Template helpers of the audit pages."""

from __future__ import annotations

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from audit.models import AuditAction

register = template.Library()

_OUTCOME_CLASSES = {
    "success": "text-bg-success",
    "denied": "text-bg-warning",
    "failed": "text-bg-danger",
}
_ACTION_LABELS = dict(AuditAction.choices)


@register.filter
def outcome_badge(outcome: str) -> str:
    """Return the Bootstrap badge class for an outcome."""
    return _OUTCOME_CLASSES.get(outcome, "text-bg-secondary")


@register.filter
def action_label(action: str) -> str:
    """Return the human label of an action (the raw value when unknown)."""
    return str(_ACTION_LABELS.get(action, action))


@register.simple_tag
def page_query(filter_query: str, key: str, cursor: object) -> str:
    """Return ``?<filters>&<key>=<cursor>`` for a pager link."""
    encoded = cursor.encode() if cursor is not None else ""  # type: ignore[attr-defined]
    parts = [p for p in (filter_query, f"{key}={encoded}") if p]
    return "?" + "&".join(parts)


@register.filter
def path_breaks(path: str) -> SafeString:
    """Escape a dotted JSON path and let it wrap after each dot instead of mid-word."""
    return mark_safe(escape(path).replace(".", ".<wbr>"))  # noqa: S308 - escaped first
