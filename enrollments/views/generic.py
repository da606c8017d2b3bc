"""Generic record views (list, detail, create, edit, delete, status, reveal), NetBox-style.

A concrete view is a subclass naming its :class:`RecordKind`: what differs between individual
enrollments and enrollment groups (capabilities, form, DPS calls, URL names, labels). Every
view checks its capability on the server (403 + audit otherwise) and lets DPS errors reach
:func:`enrollments.views.errors.dps_errors`, which renders them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, cast

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from authn.capabilities import capabilities_resolve
from authn.decorators import capability_required, deny
from authn.permissions import Capability
from authn.request import PortalRequest
from enrollments import edit_rules, selectors, services
from enrollments.clients import dps_client_for
from enrollments.dps.exceptions import (
    DpsBadRequest,
    DpsConflict,
    DpsError,
    DpsPreconditionFailed,
    DpsQuotaExceeded,
)
from enrollments.dps.types import DpsApi, IndividualEnrollment
from enrollments.form_choices import form_choices
from enrollments.views import indexed
from enrollments.views.context import page_context
from enrollments.views.errors import dps_errors, htmx_alert, is_htmx, needing
from enrollments.views.kinds import RecordKind, list_rows, status_cell
from fleet.drift_history import drift_events
from fleet.services import record_seen

C = Capability

# DPS answers a form shows as a form error rather than as an error page.
FORM_ERRORS = (DpsBadRequest, DpsConflict, DpsQuotaExceeded)


def dps_client(request: PortalRequest) -> DpsApi:
    """Return the request's DPS client: one per request, so its token is resolved once."""
    client: DpsApi | None = getattr(request, "dps_client", None)
    if client is None:
        client = dps_client_for(request.user, request.dps_instance)
        request.dps_client = client
    return client


def _form_error(form: Any, exc: DpsError) -> None:
    text = exc.user_message
    if exc.message:
        text += f" DPS said: {exc.message}"
    if exc.tracking_id:
        text += f" (trackingId {exc.tracking_id})"
    form.add_error(None, text)


def _reapply_fields(post: QueryDict) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key in post
        if key not in ("csrfmiddlewaretoken", "etag")
        for value in post.getlist(key)
    ]


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) if data else ""


#
# The generic views
#


class RecordView(View):
    """Base of the record views: the capability check, DPS error pages, no caching."""

    kind: ClassVar[RecordKind]
    # Which of the kind's capabilities the view requires, and which its DPS reads need
    # (writes and deletes declare theirs with ``needing``).
    action: ClassVar[str] = "read"
    reads: ClassVar[str] = "read"
    methods: ClassVar[tuple[str, ...] | None] = ("GET", "POST")
    cached: ClassVar[bool] = True

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        view: Callable[..., HttpResponseBase] = dps_errors(getattr(cls.kind, cls.reads))(
            super().as_view(**initkwargs)
        )
        view = capability_required(getattr(cls.kind, cls.action))(view)
        if cls.methods:
            view = require_http_methods(list(cls.methods))(view)
        return never_cache(view) if cls.cached else view

    def context(self, request: PortalRequest, **extra: Any) -> dict[str, Any]:
        return page_context(request, self.kind.name, kind=self.kind, **extra)


class RecordListView(RecordView):
    """List records from the fleet index, or from DPS one page at a time until it is built."""

    methods = None
    template_name = "enrollments/record_list.html"

    def get(self, request: PortalRequest, instance: str) -> HttpResponse:
        kind = self.kind
        sync = indexed.finished_state(request.dps_instance)
        if sync is not None:
            return indexed.record_list(request, kind, self.context(request, sync=sync))
        # Until the instance's first pass ends: page DPS, as the portal always did.
        size = selectors.page_size_from(request.GET.get("size"))
        ct = request.GET.get("ct") or None
        page = kind.page(dps_client(request), size, ct)
        ctx = self.context(request)
        caps, dps = ctx["caps"], ctx["instance"]
        # Individual enrollments can be deleted in bulk (a job, after a confirmation page).
        selectable = not kind.is_group and kind.delete in caps
        rows = list_rows(kind, page.items, caps, dps, selectable=selectable)
        ctx.update(
            rows=rows,
            page=page,
            size=size,
            sizes=selectors.PAGE_SIZES,
            ct=ct,
            list_url=kind.url("list", dps),
            selectable=selectable,
        )
        template = self.template_name
        if is_htmx(request) and request.headers.get("HX-Target") == "record-table":
            template = "enrollments/_record_table.html"
        return render(request, template, ctx)


class RecordDetailView(RecordView):
    """Show every field of a record (an enrollment's registration state too)."""

    methods = None

    def get(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        kind = self.kind
        model = kind.get(dps_client(request), key)
        ctx = self.context(request, model=model, key=key)
        caps, dps = ctx["caps"], ctx["instance"]
        # What was just read live refreshes the record's index row (a change nobody made here
        # stays to be judged as drift by the next pass).
        record_seen(dps, model)
        twin = model.initial_twin
        ctx.update(
            attestation=selectors.attestation_label(model),
            certificates=selectors.certificate_rows(model),
            tags_json=_json(twin.tags if twin else None),
            desired_json=_json(twin.desired if twin else None),
            created=selectors.when(model.created_date_time_utc),
            updated=selectors.when(model.last_updated_date_time_utc),
            edit_blocker=edit_rules.edit_blocker(model, caps),
            drift=drift_events(dps, kind.target_type, model.id),
            cell=status_cell(
                kind,
                model,
                key,
                caps,
                edit_rules.status_blocker(model, caps),
                kind.url("status", dps, key),
            ),
        )
        if isinstance(model, IndividualEnrollment):
            state = model.registration_state
            ctx.update(
                state=state,
                state_created=selectors.when(state.created_date_time_utc) if state else None,
                state_updated=selectors.when(state.last_updated_date_time_utc) if state else None,
                device_info_json=_json(model.optional_device_information),
            )
        return render(request, "enrollments/record_detail.html", ctx)


class RecordCreateView(RecordView):
    """Create a record from the form; DPS's refusals are shown in the form."""

    action = reads = "write"

    def get(self, request: PortalRequest, instance: str) -> HttpResponse:
        return self.form_page(
            request, self.kind.form_class(None, **form_choices(request, request.dps_instance)), 200
        )

    def post(self, request: PortalRequest, instance: str) -> HttpResponse:
        form = self.kind.form_class(
            request.POST or None, **form_choices(request, request.dps_instance)
        )
        if not form.is_valid():
            return self.form_page(request, form, 400)
        try:
            created = services.record_create(
                actor=request.user,
                instance=request.dps_instance,
                client=dps_client(request),
                model=form.build(),
            )
        except DpsQuotaExceeded as exc:
            # The instance is full, not the user short of a role: say so in the form.
            _form_error(form, exc)
            return self.form_page(request, form, 409)
        except (DpsBadRequest, DpsConflict) as exc:
            _form_error(form, exc)
            return self.form_page(request, form, exc.status or 400)
        messages.success(request, f"Created {self.kind.noun} {created.id}.")
        return redirect(self.kind.url("detail", request.dps_instance, created.id))

    def form_page(self, request: PortalRequest, form: Any, status: int) -> HttpResponse:
        ctx = self.context(request, form=form, mode="create")
        return render(request, "enrollments/record_form.html", ctx, status=status)


class RecordEditView(RecordView):
    """Edit a record with the ETag the user saw; a 412 shows what changed meanwhile."""

    action = "write"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Read the record first (its 404 before anything else); refuse what would lose keys.
        portal = cast(PortalRequest, request)
        self.existing = self.kind.get(dps_client(portal), kwargs["key"])
        caps = capabilities_resolve(portal.user, portal.dps_instance)
        blocker = edit_rules.edit_blocker(self.existing, caps)
        if blocker:
            return deny(
                request,
                reason=blocker,
                required=C.ATTESTATION_REVEAL.value,
                instance=portal.dps_instance.name,
            )
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        return self.form_page(
            request,
            self.kind.form_class(
                None, existing=self.existing, **form_choices(request, request.dps_instance)
            ),
            200,
        )

    def post(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        form = self.kind.form_class(
            request.POST or None,
            existing=self.existing,
            **form_choices(request, request.dps_instance),
        )
        if not form.is_valid():
            return self.form_page(request, form, 400)
        client, mine = dps_client(request), None
        with needing(self.kind.write):
            try:
                keep = form.cleaned_data.get("attestation_keep")
                current_att = (
                    services.attestation_for_edit(client=client, model=self.existing)
                    if keep
                    else None
                )
                mine = form.build(current_att)
                updated = services.record_update(
                    actor=request.user,
                    instance=request.dps_instance,
                    client=client,
                    model=mine,
                    etag=form.cleaned_data.get("etag"),
                    before=self.existing,
                )
            except DpsPreconditionFailed:
                return self.conflict(request, key, mine)
            except ValidationError as exc:
                form.add_error(None, exc)
                return self.form_page(request, form, 400)
            except FORM_ERRORS as exc:
                _form_error(form, exc)
                return self.form_page(request, form, 400)
        messages.success(request, f"Saved {self.kind.noun} {updated.id}.")
        return redirect(self.kind.url("detail", request.dps_instance, updated.id))

    def form_page(self, request: PortalRequest, form: Any, status: int) -> HttpResponse:
        existing = self.existing
        ctx = self.context(
            request,
            form=form,
            mode="edit",
            model=existing,
            key=self.kwargs["key"],
            certificates=selectors.certificate_rows(existing),
            needs_certificates=self.kind.form_class.needs_certificates(existing),
        )
        return render(request, "enrollments/record_form.html", ctx, status=status)

    def conflict(self, request: PortalRequest, key: str, mine: Any) -> HttpResponse:
        """Show what changed in DPS beside what the user sent; offer to apply it on top."""
        with needing(self.kind.read):
            current = self.kind.get(dps_client(request), key)
        ctx = self.context(
            request,
            key=key,
            current=current,
            rows=edit_rules.diff_rows(current, mine),
            reapply=_reapply_fields(request.POST),
            current_etag=current.etag,
            updated=selectors.when(current.last_updated_date_time_utc),
        )
        return render(request, "enrollments/conflict.html", ctx, status=409)


class ConfirmDeleteView(View):
    """Show a record and ask; on POST delete it with the ETag the page carried.

    Subclasses say how to ``fetch`` and ``remove`` the record and where to go ``after``.
    """

    template_name: ClassVar[str]

    def deletes(self) -> Capability:
        """Return the capability the delete needs (named on DPS's 403 page)."""
        raise NotImplementedError

    def fetch(self, request: PortalRequest, key: str) -> Any:
        raise NotImplementedError

    def remove(self, request: PortalRequest, model: Any, etag: str | None) -> None:
        raise NotImplementedError

    def after(self, request: PortalRequest) -> tuple[str, HttpResponse]:
        """Return the success message and the redirect once the record is gone."""
        raise NotImplementedError

    def delete_context(self, request: PortalRequest) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        model = self.fetch(request, key)
        return render(request, self.template_name, self.page(request, model))

    def post(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        model = self.fetch(request, key)
        ctx = self.page(request, model)
        with needing(self.deletes()):
            try:
                self.remove(request, model, request.POST.get("etag"))
            except DpsPreconditionFailed:
                ctx["stale"] = True
                return render(request, self.template_name, ctx, status=409)
            except ValidationError as exc:
                ctx["error"] = " ".join(exc.messages)
                return render(request, self.template_name, ctx, status=400)
        message, response = self.after(request)
        messages.success(request, message)
        return response

    def page(self, request: PortalRequest, model: Any) -> dict[str, Any]:
        ctx = self.delete_context(request)
        ctx["etag"] = model.etag
        ctx.setdefault("model", model)
        return ctx


class RecordDeleteView(ConfirmDeleteView, RecordView):
    """Confirm, then delete a record with its ETag."""

    action = "delete"
    template_name = "enrollments/confirm_delete.html"

    def deletes(self) -> Capability:
        return self.kind.delete

    def fetch(self, request: PortalRequest, key: str) -> Any:
        return self.kind.get(dps_client(request), key)

    def remove(self, request: PortalRequest, model: Any, etag: str | None) -> None:
        services.record_delete(
            actor=request.user,
            instance=request.dps_instance,
            client=dps_client(request),
            rt=self.kind.record,
            key=self.kwargs["key"],
            etag=etag,
            before=model,
        )

    def after(self, request: PortalRequest) -> tuple[str, HttpResponse]:
        key = self.kwargs["key"]
        return (
            f"Deleted {self.kind.noun} {key}.",
            redirect(self.kind.url("list", request.dps_instance)),
        )

    def delete_context(self, request: PortalRequest) -> dict[str, Any]:
        return self.context(request, key=self.kwargs["key"])


class RecordStatusView(RecordView):
    """Enable or disable a record inline (htmx: the new status cell; else a redirect)."""

    action = "write"
    methods = ("POST",)
    cached = False

    def post(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        kind, dps = self.kind, request.dps_instance
        client = dps_client(request)
        model = kind.get(client, key)
        blocker = edit_rules.edit_blocker(model, capabilities_resolve(request.user, dps))
        if blocker:
            return deny(
                request, reason=blocker, required=C.ATTESTATION_REVEAL.value, instance=dps.name
            )
        detail = kind.url("detail", dps, key)
        with needing(kind.write):
            try:
                updated = services.record_status_set(
                    actor=request.user,
                    instance=dps,
                    client=client,
                    model=model,
                    status=request.POST.get("status", ""),
                    etag=request.POST.get("etag"),
                )
            except DpsPreconditionFailed:
                return self.stale(request, key, detail)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
                return redirect(detail)
        if is_htmx(request):
            caps = capabilities_resolve(request.user, dps)
            cell = status_cell(kind, updated, key, caps, "", kind.url("status", dps, key))
            return render(request, "enrollments/_status_cell.html", {"cell": cell})
        noun = kind.noun.capitalize()
        messages.success(request, f"{noun} {key} is now {updated.provisioning_status}.")
        return redirect(detail)

    def stale(self, request: PortalRequest, key: str, detail: str) -> HttpResponse:
        if not is_htmx(request):
            messages.warning(
                request, f"{key} changed in DPS since you saw it; nothing was changed."
            )
            return redirect(detail)
        text = f"{key} changed in DPS since the page was shown; reload the page and try again."
        response = render(
            request, "enrollments/_alert.html", {"level": "warning", "text": text}, status=412
        )
        return htmx_alert(response)


class RecordRevealView(RecordView):
    """Show the keys of a record (audited)."""

    action = reads = "reveal"
    methods = ("POST",)

    def post(self, request: PortalRequest, instance: str, key: str) -> HttpResponse:
        att = services.attestation_reveal(
            actor=request.user,
            instance=request.dps_instance,
            client=dps_client(request),
            target_type=self.kind.target_type,
            target_id=key,
        )
        return render(
            request, "enrollments/_revealed.html", self.context(request, key=key, att=att)
        )
