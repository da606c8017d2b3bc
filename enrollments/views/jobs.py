"""Pages of bulk jobs on one DPS instance: import, export, delete selected, jobs, results.

Every view checks the instance capability with :func:`authn.decorators.capability_required`
(anonymous → sign-in, missing → 403 + audit) and, for a job, that the user owns it or is a
portal admin. The services re-check the owner's capabilities when the job is queued and again
when a worker runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from authn.capabilities import capabilities_resolve
from authn.decorators import capability_required, deny
from authn.permissions import Capability
from authn.request import PortalRequest
from enrollments.bulk import jobs as bulk
from enrollments.bulk import retention, selectors
from enrollments.forms_bulk import (
    DeleteSelectedForm,
    ExportForm,
    ImportForm,
    JobFilterForm,
    RowFilterForm,
    UploadLimit,
    selected_items,
)
from enrollments.job_access import (
    JobDenied,
    export_download_open,
    export_downloadable,
    is_portal_admin,
    job_for_viewer,
)
from enrollments.models import BulkJob, JobKind, JobState, RowPlan
from enrollments.views.context import page_context

C = Capability
ROWS_PER_PAGE = 50
IMPORT_STARTED = (
    "The file is uploaded; it is being checked. Nothing changes in DPS until you confirm the "
    "preview."
)


#
# Shared machinery
#


def _caps(request: PortalRequest) -> Any:
    return capabilities_resolve(request.user, request.dps_instance)


def _cap_values(request: PortalRequest) -> list[str]:
    return [c.value for c in _caps(request)]


def _ctx(request: PortalRequest, **extra: Any) -> dict[str, Any]:
    return page_context(request, "bulk", **extra)


def _job_url(job: BulkJob, view: str = "job_detail") -> str:
    return reverse(f"bulk:{view}", args=[job.instance.name, job.pk])


def _denied(request: PortalRequest, exc: JobDenied) -> HttpResponse:
    return deny(
        request, reason=exc.reason, required=exc.required, instance=request.dps_instance.name
    )


JobView = Callable[..., HttpResponseBase]


def job_view(method: str, *, cached: bool = True) -> Callable[[JobView], JobView]:
    """Make a page of one job: ``method`` only, the read capability, and the job named by the
    URL handed to the view if the user may see it (403 + audit if not)."""

    def decorator(view: JobView) -> JobView:
        @wraps(view)
        def wrapped(request: PortalRequest, instance: str, job_id: int) -> HttpResponseBase:
            try:
                job = job_for_viewer(
                    user=request.user,
                    instance=request.dps_instance,
                    job_id=job_id,
                    capabilities=_cap_values(request),
                )
            except JobDenied as exc:
                return _denied(request, exc)
            return view(request, job)

        guarded = require_http_methods([method])(capability_required(C.ENROLLMENTS_READ)(wrapped))
        return never_cache(guarded) if cached else guarded

    return decorator


def _service_denied(request: PortalRequest, exc: PermissionDenied, required: str) -> HttpResponse:
    return deny(request, reason=str(exc), required=required, instance=request.dps_instance.name)


def service_refusals(required: str) -> Callable[[JobView], JobView]:
    """Answer a service's PermissionDenied with the 403 page naming ``required`` (audited)."""

    def decorator(view: JobView) -> JobView:
        @wraps(view)
        def wrapped(request: PortalRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                return view(request, *args, **kwargs)
            except PermissionDenied as exc:
                return _service_denied(request, exc, required)

        return wrapped

    return decorator


def _job_start(request: PortalRequest, kind: str, options: dict[str, Any], **kw: Any) -> BulkJob:
    """Create a job of ``kind`` for the user on this instance (the service re-checks rights)."""
    return bulk.job_create(
        owner=request.user,
        instance=request.dps_instance,
        kind=kind,
        capabilities=_cap_values(request),
        options=options,
        **kw,
    )


#
# Starting jobs
#


@csrf_exempt  # only until the upload limit is in place: _import_page checks the token
@never_cache
@require_http_methods(["GET", "POST"])
def import_page(request: PortalRequest, instance: str) -> HttpResponseBase:
    """Upload a CSV; the job validates it and previews the changes before anything is written.

    The upload limit must be among the upload handlers before anything reads the body,
    the CSRF check included (Django: "Modifying upload handlers on the fly").
    """
    limit = UploadLimit(request, limit=settings.BULK_UPLOAD_MAX_BYTES)
    request.upload_handlers.insert(0, limit)
    return _import_page(request, instance=instance, upload_limit=limit)


@csrf_protect
@capability_required(C.ENROLLMENTS_READ)
@capability_required(C.ENROLLMENTS_WRITE)
@service_refusals(C.ENROLLMENTS_WRITE.value)
def _import_page(
    request: PortalRequest, instance: str, upload_limit: UploadLimit
) -> HttpResponseBase:
    posted = request.method == "POST"
    # Reading the body first is what runs the upload handlers, the limit among them.
    data, files = (request.POST, request.FILES) if posted else (None, None)
    form = ImportForm(data, files, too_large=posted and upload_limit.exceeded)
    if posted and form.is_valid():
        upload = form.cleaned_data["file"]
        options = {"default_operation": form.cleaned_data["default_operation"]}
        name = Path(upload.name or "upload.csv").name
        try:
            job = _job_start(request, JobKind.IMPORT, options, upload=upload, source_name=name)
        except ValidationError as exc:
            form.add_error("file", exc)
        else:
            messages.success(request, IMPORT_STARTED)
            return redirect(_job_url(job))
    max_mb = settings.BULK_UPLOAD_MAX_BYTES // (1024 * 1024)
    ctx = _ctx(request, form=form, tab="import", max_mb=max_mb)
    return render(request, "enrollments/bulk/import.html", ctx, status=400 if posted else 200)


@never_cache
@require_http_methods(["GET", "POST"])
@capability_required(C.ENROLLMENTS_READ)
@service_refusals(C.ENROLLMENTS_READ.value)
def export_start(request: PortalRequest, instance: str) -> HttpResponse:
    """Export every individual enrollment of the instance to a CSV in the import format."""
    can_reveal = C.ATTESTATION_REVEAL in _caps(request)
    posted = request.method == "POST"
    form = ExportForm(request.POST if posted else None)
    if posted and form.is_valid():
        include_keys = form.cleaned_data["include_keys"]
        if include_keys and not can_reveal:
            return deny(
                request,
                reason="Exporting keys needs the attestation-mechanism action, which your "
                "Azure role on this instance lacks.",
                required=C.ATTESTATION_REVEAL.value,
                instance=request.dps_instance.name,
            )
        job = _job_start(request, JobKind.EXPORT, {"include_keys": include_keys})
        messages.success(request, "The export is queued; download it here when it is done.")
        return redirect(_job_url(job))
    ctx = _ctx(request, form=form, can_reveal=can_reveal, tab="export")
    return render(request, "enrollments/bulk/export.html", ctx, status=400 if posted else 200)


@never_cache
@require_POST
@capability_required(C.ENROLLMENTS_DELETE)
@service_refusals(C.ENROLLMENTS_DELETE.value)
def delete_selected(request: PortalRequest, instance: str) -> HttpResponse:
    """Delete a POSTed list of individual enrollments as a job, after a confirmation page.

    The first POST (from a list page: ``selected`` or ``registration_ids``) shows what will be
    deleted; the second, with ``confirm``, queues the job.
    """
    items = selected_items(request.POST)
    ids = [rid for rid, _etag in items]
    etags = {rid: etag for rid, etag in items if etag}
    confirming = "confirm" in request.POST
    form = DeleteSelectedForm(request.POST if confirming else None, ids=ids)
    if confirming and form.is_valid():
        try:
            options = {"registration_ids": ids, "etags": etags}
            job = _job_start(request, JobKind.DELETE_SELECTED, options)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Deleting {len(ids):,} enrollments.")
            return redirect(_job_url(job))
    if not ids:
        form.is_bound = True
        form.add_error(None, "Select at least one enrollment to delete.")
    status = 400 if form.errors else 200
    return render(
        request,
        "enrollments/bulk/delete_selected.html",
        _ctx(
            request,
            form=form,
            ids=ids[:500],
            id_count=len(ids),
            all_items=[f"{rid}|{etag}" if etag else rid for rid, etag in items],
        ),
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
@capability_required(C.REGISTRATIONS_READ)
@capability_required(C.REGISTRATIONS_DELETE)
@service_refusals(C.REGISTRATIONS_DELETE.value)
def group_registrations_delete(request: PortalRequest, instance: str, key: str) -> HttpResponse:
    """Delete every registration record of a group: list them, preview the count, confirm."""
    if request.method == "POST":
        job = _job_start(request, JobKind.DELETE_REGISTRATIONS, {"group_id": key})
        messages.success(
            request, f"Listing the registration records of {key}; confirm the count to delete."
        )
        return redirect(_job_url(job))
    return render(request, "enrollments/bulk/delete_registrations.html", _ctx(request, key=key))


@require_GET
@capability_required(C.ENROLLMENTS_READ)
def format_help(request: PortalRequest, instance: str) -> HttpResponse:
    """Serve docs/csv-format.md, the format's full reference, as plain text."""
    path = Path(settings.BASE_DIR) / "docs" / "csv-format.md"
    if not path.exists():
        raise Http404("The format reference is not installed.")
    return HttpResponse(path.read_text(encoding="utf-8"), content_type="text/plain; charset=utf-8")


#
# Jobs
#


@never_cache
@require_GET
@capability_required(C.ENROLLMENTS_READ)
def job_list(request: PortalRequest, instance: str) -> HttpResponse:
    """List my jobs on this instance (everyone's for a portal admin who asks)."""
    form = JobFilterForm(request.GET or None)
    state, everyone = "", False
    if form.is_valid():
        state = form.cleaned_data["state"]
        everyone = form.cleaned_data["everyone"] and is_portal_admin(request.user)
    jobs = selectors.job_list(
        instance=request.dps_instance,
        owner=None if everyone else request.user,
        state=state,
        kinds=bulk.job_visible_kinds(_cap_values(request)),
    )
    page = Paginator(jobs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "enrollments/bulk/job_list.html",
        _ctx(request, form=form, page=page, everyone=everyone, tab="jobs"),
    )


def _row_table(request: PortalRequest, job: BulkJob) -> dict[str, Any]:
    form = RowFilterForm(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = {k: v for k, v in form.cleaned_data.items() if v}
    rows = selectors.job_rows(job, **filters)
    page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    items = [
        {
            "row": row,
            "errors": selectors.row_errors(row),
            "diff": selectors.row_diff(row),
        }
        for row in page.object_list
    ]
    query = request.GET.copy()
    for poll_only in ("page", "seen"):
        query.pop(poll_only, None)
    return {"row_form": form, "row_page": page, "row_items": items, "row_query": query.urlencode()}


def _live_ctx(request: PortalRequest, job: BulkJob, **extra: Any) -> dict[str, Any]:
    """Return what the job page's live region shows: progress, counters, rows (not for an export)."""
    ctx = _ctx(request, job=job, progress=selectors.job_progress(job), **extra)
    ctx["missing"] = bulk.job_missing(job, (c.value for c in ctx["caps"]))
    if job.kind != JobKind.EXPORT:
        ctx.update(_row_table(request, job))
    return ctx


@job_view("GET")
def job_detail(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Show a job: state, live progress, preview counts, invalid rows and per-row results."""
    ctx = _live_ctx(request, job, tab="jobs")
    ctx["file_gone"] = (
        retention.file_gone_reason(job)
        if job.kind == JobKind.EXPORT and job.state == JobState.COMPLETED and not job.result_path
        else ""
    )
    if request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == "rows":
        return render(request, "enrollments/bulk/_rows.html", ctx)
    return render(request, "enrollments/bulk/job_detail.html", ctx)


@job_view("GET")
def job_progress(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Answer the htmx poll with the live region (bar, counters, rows); reload on a new state."""
    response = render(request, "enrollments/bulk/_live.html", _live_ctx(request, job))
    seen = request.GET.get("seen", "")
    if seen and seen != job.state:
        # The buttons and notices outside the live region change with the state: show them all.
        response["HX-Refresh"] = "true"
    return response


@job_view("POST", cached=False)
def job_confirm(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Start a previewed job."""
    try:
        bulk.job_confirm(job=job, actor=request.user, capabilities=_cap_values(request))
    except PermissionDenied as exc:
        owner = job.owner_id == request.user.pk
        return _service_denied(
            request, exc, ", ".join(bulk.job_required(job)) if owner else "job owner"
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Confirmed: the changes are being applied.")
    return redirect(_job_url(job))


@job_view("POST", cached=False)
def job_cancel(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Cancel a job: rows not yet applied are skipped; applied rows stay applied."""
    try:
        bulk.job_cancel(job=job, actor=request.user)
    except PermissionDenied as exc:
        return _service_denied(request, exc, "job owner or Portal.Admin")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.info(request, "Cancelling: rows already sent finish; the rest are skipped.")
    return redirect(_job_url(job))


@job_view("GET")
def job_report(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Stream the result report: every input row with its plan, outcome and error."""
    if job.kind == JobKind.EXPORT:
        raise Http404("An export has no per-row report; download the file.")
    response = StreamingHttpResponse(
        selectors.job_report_lines(job), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-report.csv"'
    return response


@job_view("GET")
def job_download(request: PortalRequest, job: BulkJob) -> HttpResponseBase:
    """Download a finished export (only its owner; keys need the reveal capability now too)."""
    if not export_downloadable(job):
        raise Http404("No export file to download.")
    try:
        handle = export_download_open(job=job, user=request.user, capabilities=_cap_values(request))
    except JobDenied as exc:
        return _denied(request, exc)
    if handle is None:
        return _file_gone(request, job)
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{job.instance.name}-enrollments-{job.pk}.csv",
        content_type="text/csv",
    )


def _file_gone(request: PortalRequest, job: BulkJob) -> HttpResponse:
    """Answer 410 Gone: the export's file was deleted (downloaded once, or expired)."""
    return render(
        request,
        "enrollments/bulk/file_gone.html",
        _ctx(request, job=job, reason=retention.file_gone_reason(job), tab="jobs"),
        status=410,
    )


__all__ = [
    "RowPlan",
    "delete_selected",
    "export_start",
    "group_registrations_delete",
    "import_page",
    "job_cancel",
    "job_confirm",
    "job_detail",
    "job_download",
    "job_list",
    "job_progress",
    "job_report",
]
