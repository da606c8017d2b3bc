"""Audit pages (the ``audit.view`` permission): list, event, histories, chart, exports.

Views are thin: the form validates GET parameters, selectors query, templates render.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.diff import json_diff
from audit.exports import EXPORT_FORMATS, audit_export
from audit.forms import KNOWN_TARGET_TYPES, AuditFilterForm
from audit.links import target_history_url
from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.selectors import (
    AuditFilters,
    Cursor,
    audit_chart,
    audit_event_get,
    audit_event_page,
)
from authn.backends import AUDIT_VIEW
from authn.decorators import permission_required

_FILTER_KEYS = tuple(AuditFilterForm.base_fields)


def _audit_view(view: Any) -> Any:
    return require_GET(never_cache(permission_required(AUDIT_VIEW)(view)))


def _filter_form(request: HttpRequest) -> tuple[AuditFilterForm, AuditFilters]:
    form = AuditFilterForm(request.GET or None)
    if form.is_bound:
        form.is_valid()
    return form, form.filters()


def _filter_query(request: HttpRequest) -> str:
    """The filter part of the query string, for links that keep the filters."""
    params = request.GET.copy()
    for key in list(params):
        if key not in _FILTER_KEYS:
            del params[key]
    return params.urlencode()


def _page_context(request: HttpRequest, filters: AuditFilters) -> dict[str, Any]:
    before = Cursor.decode(request.GET.get("before", ""))
    after = Cursor.decode(request.GET.get("after", ""))
    page = audit_event_page(filters, before=before, after=after)
    return {"page": page, "rows": _rows(page.events), "filter_query": _filter_query(request)}


_OUTCOME_BADGES: dict[str, str] = {
    AuditOutcome.SUCCESS: "text-bg-success",
    AuditOutcome.DENIED: "text-bg-warning",
    AuditOutcome.FAILED: "text-bg-danger",
}
_ACTION_LABELS = dict(AuditAction.choices)
_OUTCOME_LABELS: dict[str, str] = dict(AuditOutcome.choices)


def _rows(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """Prepare each table row in Python: a template tag per cell costs more than the query.

    Links are built from one reversed prefix; path parts are quoted like ``reverse`` does;
    target links come from :func:`audit.links.target_history_url`, which takes any id.
    """
    base = reverse("audit:event_list")
    rows = []
    for e in events:
        actor_key = e.actor_oid or e.actor_upn
        target_url = target_history_url(e.dps_instance, e.target_type, e.target_id)
        rows.append(
            {
                "pk": e.pk,
                "iso": e.time.isoformat(),
                "time": e.time.strftime("%Y-%m-%d %H:%M:%S"),
                "actor_url": f"{base}actors/{quote(actor_key, safe='')}/" if actor_key else "",
                "actor_label": e.actor_name or e.actor_upn or e.actor_oid,
                "actor_upn": e.actor_upn if e.actor_name else "",
                "action": e.action,
                "action_label": _ACTION_LABELS.get(e.action, e.action),
                "dps_instance": e.dps_instance,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "target_url": target_url,
                "outcome_label": _OUTCOME_LABELS.get(e.outcome, e.outcome),
                "badge": _OUTCOME_BADGES.get(e.outcome, "text-bg-secondary"),
                "dps_answer": f"{e.dps_status or ''} · {e.dps_error_code}"
                if e.dps_error_code
                else "",
                "url": f"{base}events/{e.pk}/",
            }
        )
    return rows


#
# Pages
#


@_audit_view
def event_list(request: HttpRequest) -> HttpResponse:
    form, filters = _filter_form(request)
    context = _page_context(request, filters)
    context.update(
        form=form,
        heading="Audit log",
        target_types=KNOWN_TARGET_TYPES,
        active_tab="events",
    )
    return render(request, "audit/event_list.html", context)


@_audit_view
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    event = audit_event_get(pk)
    if event is None:
        raise Http404("No such audit event.")
    return render(
        request,
        "audit/event_detail.html",
        {
            "event": event,
            "diff": json_diff(event.before, event.after),
            "history_url": target_history_url(
                event.dps_instance, event.target_type, event.target_id
            ),
        },
    )


@_audit_view
def target_history(
    request: HttpRequest, dps_instance: str, target_type: str, target_id: str
) -> HttpResponse:
    return _target_history(request, dps_instance, target_type, target_id)


@_audit_view
def target_history_query(request: HttpRequest) -> HttpResponse:
    """The same history for ids a path cannot carry (slashes, dot segments, no instance)."""
    target_type = request.GET.get("target_type", "")
    target_id = request.GET.get("target_id", "")
    if not target_type or not target_id:
        return HttpResponseBadRequest(
            "A target history needs the target_type and target_id query parameters "
            "(dps_instance is optional).",
            content_type="text/plain; charset=utf-8",
        )
    return _target_history(request, request.GET.get("dps_instance", ""), target_type, target_id)


def _target_history(
    request: HttpRequest, dps_instance: str, target_type: str, target_id: str
) -> HttpResponse:
    # Taken as given (no strip): the ids are matched exactly as audit_record stored them.
    fixed = AuditFilters(dps_instance=dps_instance, target_type=target_type, target_id=target_id)
    context = _page_context(request, fixed)
    context.update(
        heading=f"History of {target_type} {target_id}",
        subheading=f"on {dps_instance}" if dps_instance else "on any DPS instance",
        scope="target",
        fixed_filters=fixed,
    )
    return render(request, "audit/event_scoped.html", context)


@_audit_view
def actor_activity(request: HttpRequest, actor: str) -> HttpResponse:
    fixed = AuditFilters(actor=actor)
    context = _page_context(request, fixed)
    first = context["page"].events[0] if context["page"].events else None
    name = (first.actor_name or first.actor_upn) if first else actor
    context.update(
        heading=f"Activity of {name}",
        subheading=actor,
        scope="actor",
        fixed_filters=fixed,
    )
    return render(request, "audit/event_scoped.html", context)


@_audit_view
def chart(request: HttpRequest) -> HttpResponse:
    form, filters = _filter_form(request)
    data = audit_chart(filters)
    return render(
        request,
        "audit/chart.html",
        {
            "form": form,
            "chart": data,
            "bars": _chart_bars(data),
            "filter_query": _filter_query(request),
            "target_types": KNOWN_TARGET_TYPES,
            "active_tab": "chart",
            "outcomes": AuditOutcome.choices,
        },
    )


#
# Chart geometry (server-side SVG: no script, no inline style)
#

CHART_WIDTH = 960
CHART_HEIGHT = 240
_LEFT, _BOTTOM, _TOP = 48, 28, 8


def _nice_ceiling(value: int) -> int:
    """Round up to 2, 4 or 10 times a power of ten, so the half-way tick is a whole number."""
    scale = 1
    while True:
        for step in (2, 4, 10):
            if value <= step * scale:
                return step * scale
        scale *= 10


def _chart_bars(data: Any) -> dict[str, Any]:
    """Return rectangles and axis labels for the stacked bar chart, in SVG units."""
    n = max(len(data.buckets), 1)
    plot_w = CHART_WIDTH - _LEFT - 8
    plot_h = CHART_HEIGHT - _BOTTOM - _TOP
    slot = plot_w / n
    width = max(slot * 0.8, 1)
    peak = _nice_ceiling(data.peak)
    bars = []
    label_every = max(1, n // 10)
    for i, bucket in enumerate(data.buckets):
        x = _LEFT + i * slot + (slot - width) / 2
        y = _TOP + plot_h
        segments = []
        for outcome, _label in AuditOutcome.choices:
            count = bucket.counts.get(outcome, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            segments.append({"outcome": outcome, "y": round(y, 2), "h": round(h, 2), "n": count})
        fmt = "%d %b %H:00" if data.unit == "hour" else "%d %b"
        bars.append(
            {
                "x": round(x, 2),
                "w": round(width, 2),
                "segments": segments,
                "total": bucket.total,
                "label": bucket.start.strftime(fmt),
                "show_label": i % label_every == 0,
                "label_x": round(x + width / 2, 2),
            }
        )
    ticks = [
        {"value": round(peak * f), "y": round(_TOP + plot_h - plot_h * f, 2)} for f in (0, 0.5, 1)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": _LEFT,
        "plot_right": CHART_WIDTH - 8,
        "baseline": _TOP + plot_h,
        "label_y": CHART_HEIGHT - 8,
        "bars": bars,
        "ticks": ticks,
    }


#
# Exports
#


@_audit_view
def export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    if fmt not in EXPORT_FORMATS:
        raise Http404("Unknown export format.")
    _form, filters = _filter_form(request)
    lines = audit_export(actor=request.user, filters=filters, fmt=fmt)
    response = StreamingHttpResponse(lines, content_type=EXPORT_FORMATS[fmt].content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    extension = EXPORT_FORMATS[fmt].extension
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
