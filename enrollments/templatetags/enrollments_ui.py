"""Template helpers of the enrollment pages: form fields, the instance switcher, key masks."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from authn.models import DpsInstance

register = template.Library()


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


@register.inclusion_tag("enrollments/_instance_switcher.html", takes_context=True)
def instance_switcher(
    context: template.Context, current: Any, section: str = "enrollment"
) -> dict[str, Any]:
    """Render a menu to open the same section on another registered DPS instance."""
    view = "group_list" if section == "group" else "enrollment_list"
    others = [
        {"name": i.name, "url": reverse(f"enrollments:{view}", args=[i.name])}
        for i in DpsInstance.objects.filter(enabled=True).only("name")
    ]
    return {"current": current, "instances": others}


@register.filter
def masked(value: str | None) -> str:
    """Return a fixed-length mask: its length says nothing about the secret."""
    return "••••••••••••" if value else ""
