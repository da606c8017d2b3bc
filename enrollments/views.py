"""Pages of individual enrollments, enrollment groups and registration records, per DPS instance.

Views stay thin: capability check (decorator: 403 + audit), one selector or service call,
render. Every DPS error becomes a page (or an htmx fragment) in words with DPS's trackingId.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from audit.redaction import redact
from authn.capabilities import capabilities_invalidate, capabilities_resolve
from authn.decorators import capability_required, deny
from authn.permissions import Capability
from enrollments import selectors, services
from enrollments.clients import dps_client_for
from enrollments.dps.exceptions import (
    DpsBadRequest,
    DpsConflict,
    DpsError,
    DpsForbidden,
    DpsHostRefused,
    DpsNotFound,
    DpsPreconditionFailed,
    DpsQuotaExceeded,
    DpsThrottled,
    DpsUnauthorized,
)
from enrollments.dps.types import IndividualEnrollment
from enrollments.form_choices import form_choices
from enrollments.forms import DeviceKeyForm, EnrollmentForm, EnrollmentGroupForm

C = Capability
READ_ONLY = {"registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"}
CONTRIBUTOR = "Device Provisioning Service Data Contributor"
READER = "Device Provisioning Service Data Reader"


#
# Shared machinery
#


def _client(request: HttpRequest) -> Any:
    # One client per request: its token is resolved once, however many DPS calls follow.
    client = getattr(request, "_dps_client", None)
    if client is None:
        client = dps_client_for(request.user, request.dps_instance)  # type: ignore[attr-defined]
        request._dps_client = client  # type: ignore[attr-defined]
    return client


def _base(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    instance = request.dps_instance  # type: ignore[attr-defined]
    kind = extra.get("kind")
    section = kind.name if kind is not None else extra.pop("section", "enrollment")
    caps = capabilities_resolve(request.user, instance)
    return {"instance": instance, "caps": caps, "section": section, **extra}


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def role_needed(capability: Capability) -> str:
    """Say which role grants ``capability`` (for a DPS 403)."""
    if capability.value.endswith(".read"):
        return f"{READER} or {CONTRIBUTOR}"
    if capability is C.ATTESTATION_REVEAL:
        return f"{CONTRIBUTOR}, or a custom role with {capability.data_action}"
    return CONTRIBUTOR


_STATUS = [
    (DpsHostRefused, 503, "This DPS instance is refused"),
    (DpsForbidden, 403, "Not allowed by DPS"),
    (DpsQuotaExceeded, 409, "DPS instance limit reached"),
    (DpsNotFound, 404, "Not found"),
    (DpsConflict, 409, "Conflict"),
    (DpsPreconditionFailed, 412, "Changed by someone else"),
    (DpsThrottled, 429, "DPS is busy"),
    (DpsUnauthorized, 401, "DPS refused the sign-in"),
    (DpsBadRequest, 400, "DPS rejected the request"),
]


def dps_error(request: HttpRequest, exc: DpsError, needed: Capability) -> HttpResponse:
    """Render a DPS failure in words; a 403 also forgets the user's cached capabilities."""
    instance = request.dps_instance  # type: ignore[attr-defined]
    status, title = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (503, ""))
    title = title or "DPS is unavailable"
    hint = ""
    if isinstance(exc, DpsForbidden):
        capabilities_invalidate(request.user, instance)
        hint = (
            f"This needs the data action {needed.data_action} on {instance.name}, "
            f"which the role {role_needed(needed)} grants. Ask an owner of the DPS instance "
            "to assign it; the portal has re-read your permissions."
        )
    elif isinstance(exc, DpsThrottled):
        wait = f" in {exc.retry_after:.0f} seconds" if exc.retry_after else " in a moment"
        hint = f"Try again{wait}."
    ctx = _base(request, error=exc, title=title, hint=hint, status=status)
    template = "enrollments/_dps_error.html" if _is_htmx(request) else "enrollments/dps_error.html"
    response = render(request, template, ctx, status=status)
    if isinstance(exc, DpsThrottled) and exc.retry_after:
        response["Retry-After"] = str(int(exc.retry_after))
    if _is_htmx(request):
        response["HX-Retarget"] = "#dps-alerts"
        response["HX-Reswap"] = "innerHTML"
    return response


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict) and data:
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(data, sort_keys=True) if not isinstance(data, str) else data}


def diff_rows(current: Any, mine: Any) -> list[dict[str, Any]]:
    """Return field-by-field rows of two records, secrets masked, changed ones flagged."""

    def clean(model: Any) -> dict[str, str]:
        data = {k: v for k, v in model.to_json().items() if k not in READ_ONLY}
        # GET masks symmetric keys and an absent capability means "no IoT Edge": compare
        # what the user can actually see differ, not artefacts of the read.
        data.get("attestation", {}).pop("symmetricKey", None)
        data.setdefault("capabilities", {"iotEdge": False})
        return _flatten(redact(data))

    left, right = clean(current), clean(mine)
    rows = []
    for path in sorted(set(left) | set(right)):
        a, b = left.get(path, "—"), right.get(path, "—")
        rows.append({"path": path, "current": a, "mine": b, "changed": a != b})
    return rows


def _reapply_fields(post: QueryDict) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key in post
        if key not in ("csrfmiddlewaretoken", "etag")
        for value in post.getlist(key)
    ]


#
# Kinds: what differs between individual enrollments and groups
#


@dataclass(frozen=True)
class _Kind:
    """What differs between the pages of individual enrollments and of groups."""

    name: str
    is_group: bool
    noun: str
    read: Capability
    write: Capability
    delete: Capability
    record: services.RecordType
    form_class: Any
    get: Callable[[Any, str], Any]
    page: Callable[[Any, int, str | None], Any]
    reveal: Capability = C.ATTESTATION_REVEAL

    @property
    def target_type(self) -> str:
        return self.record.target_type


ENROLLMENTS = _Kind(
    name="enrollment",
    is_group=False,
    noun="enrollment",
    read=C.ENROLLMENTS_READ,
    write=C.ENROLLMENTS_WRITE,
    delete=C.ENROLLMENTS_DELETE,
    record=services.ENROLLMENTS,
    form_class=EnrollmentForm,
    get=lambda client, key: selectors.enrollment_get(client=client, registration_id=key),
    page=lambda client, size, ct: selectors.enrollment_page(
        client=client, page_size=size, continuation=ct
    ),
)
GROUPS = _Kind(
    name="group",
    is_group=True,
    noun="enrollment group",
    read=C.ENROLLMENTGROUPS_READ,
    write=C.ENROLLMENTGROUPS_WRITE,
    delete=C.ENROLLMENTGROUPS_DELETE,
    record=services.GROUPS,
    form_class=EnrollmentGroupForm,
    get=lambda client, key: selectors.group_get(client=client, group_id=key),
    page=lambda client, size, ct: selectors.group_page(
        client=client, page_size=size, continuation=ct
    ),
)


def _url(kind: _Kind, view: str, instance: Any, key: str | None = None) -> str:
    args = [instance.name] + ([key] if key is not None else [])
    return reverse(f"enrollments:{kind.name}_{view}", args=args)


# What reverse() leaves unquoted in a path argument (django.urls.resolvers).
_PATH_SAFE = "!$&'()*+,;=/~:@"
_KEY_MARK = "--key--"


def key_urls(kind: _Kind, view: str, instance: Any) -> Callable[[str], str]:
    """Return a function giving ``_url(kind, view, instance, key)`` for any key.

    The URL is reversed once around a placeholder and each key is quoted into it, so a page
    of rows costs one ``reverse()`` per link kind instead of one per row.
    """
    head, _, tail = _url(kind, view, instance, _KEY_MARK).partition(_KEY_MARK)
    return lambda key: head + quote(key, safe=_PATH_SAFE) + tail


def status_cell(
    kind: _Kind, model: Any, key: str, caps: Any, blocker: str, url: str
) -> dict[str, Any]:
    """Return what ``_status_cell.html`` shows: the badge and, if allowed, the toggle form."""
    return {
        "key": key,
        "dom_id": f"status-{slugify(key)}",
        "disabled": model.provisioning_status == "disabled",
        "can_toggle": kind.write in caps,
        "blocker": blocker,
        "url": url,
        "etag": model.etag,
    }


def _edit_blocker(model: Any, caps: Any) -> str:
    """Return why an edit or status change cannot be offered, or '' when it can."""
    if model.attestation.type == "symmetricKey" and C.ATTESTATION_REVEAL not in caps:
        return (
            "Changing a symmetric-key record must carry its keys, which are read with the "
            "attestation-mechanism action your role lacks; without them DPS would generate new "
            "keys and every device would lose access."
        )
    return ""


def _status_blocker(model: Any, caps: Any) -> str:
    blocker = _edit_blocker(model, caps)
    if not blocker and EnrollmentForm.needs_certificates(model):
        blocker = "DPS does not return certificates: use Edit and paste the certificate again."
    return blocker


def _for_both(
    handler: Callable[..., HttpResponse],
    capability: str,
    doc: str,
    *,
    methods: tuple[str, ...] | None = None,
    cached: bool = True,
) -> tuple[Callable[..., HttpResponse], Callable[..., HttpResponse]]:
    """Return the individual-enrollment view and the group view of ``handler``.

    Each checks, on the server, the capability its kind names under ``capability``
    (``read``, ``write``, ``delete`` or ``reveal``): 403 and a denied audit event otherwise.
    """
    views = []
    for kind in (ENROLLMENTS, GROUPS):

        def view(request: HttpRequest, instance: str, *, _kind: _Kind = kind, **kw: Any) -> Any:
            return handler(request, _kind, **kw)

        view.__name__ = view.__qualname__ = f"{kind.name}_{handler.__name__.lstrip('_')}"
        view.__doc__ = doc.format(
            title="individual enrollment" if kind is ENROLLMENTS else kind.noun
        )
        wrapped: Callable[..., HttpResponse] = capability_required(getattr(kind, capability))(view)
        if methods:
            wrapped = require_http_methods(list(methods))(wrapped)
        views.append(never_cache(wrapped) if cached else wrapped)
    return views[0], views[1]


#
# Lists
#


def _list(request: HttpRequest, kind: _Kind) -> HttpResponse:
    size = selectors.page_size_from(request.GET.get("size"))
    ct = request.GET.get("ct") or None
    try:
        page = kind.page(_client(request), size, ct)
    except DpsError as exc:
        return dps_error(request, exc, kind.read)
    ctx = _base(request)
    caps, instance = ctx["caps"], ctx["instance"]
    detail_url = key_urls(kind, "detail", instance)
    status_url = key_urls(kind, "status", instance)
    # Individual enrollments can be deleted in bulk (a job, after a confirmation page); each
    # checkbox carries the etag the user saw, so a record changed since is not deleted.
    selectable = not kind.is_group and "enrollments.delete" in caps
    # Rows are prepared here so the template only prints values: per-row {% url %},
    # {% include %} and filters were two thirds of the page's time.
    rows = [
        {
            "key": item.id,
            "url": detail_url(item.id),
            "device_id": getattr(item, "device_id", None),
            "attestation": selectors.attestation_label(item),
            "hubs": ", ".join(item.iot_hubs or ()),
            "updated": selectors.when(item.last_updated_date_time_utc),
            "cell": status_cell(
                kind, item, item.id, caps, _status_blocker(item, caps), status_url(item.id)
            ),
            "select": f"{item.id}|{item.etag or ''}" if selectable else None,
        }
        for item in page.items
    ]
    ctx.update(
        kind=kind,
        rows=rows,
        page=page,
        size=size,
        sizes=selectors.PAGE_SIZES,
        ct=ct,
        list_url=_url(kind, "list", instance),
        selectable=selectable,
    )
    template = "enrollments/record_list.html"
    if _is_htmx(request) and request.headers.get("HX-Target") == "record-table":
        template = "enrollments/_record_table.html"
    return render(request, template, ctx)


enrollment_list, group_list = _for_both(_list, "read", "List {title}s one page at a time.")


#
# Detail
#


def _detail(request: HttpRequest, kind: _Kind, key: str) -> HttpResponse:
    try:
        model = kind.get(_client(request), key)
    except DpsError as exc:
        return dps_error(request, exc, kind.read)
    ctx = _base(request, kind=kind, model=model, key=key)
    caps = ctx["caps"]
    twin = model.initial_twin
    ctx.update(
        attestation=selectors.attestation_label(model),
        certificates=selectors.certificate_rows(model),
        tags_json=json.dumps(twin.tags, indent=2, sort_keys=True) if twin and twin.tags else "",
        desired_json=(
            json.dumps(twin.desired, indent=2, sort_keys=True) if twin and twin.desired else ""
        ),
        created=selectors.when(model.created_date_time_utc),
        updated=selectors.when(model.last_updated_date_time_utc),
        edit_blocker=_edit_blocker(model, caps),
        cell=status_cell(
            kind,
            model,
            key,
            caps,
            _status_blocker(model, caps),
            _url(kind, "status", ctx["instance"], key),
        ),
    )
    if isinstance(model, IndividualEnrollment):
        state = model.registration_state
        ctx.update(
            state=state,
            state_created=selectors.when(state.created_date_time_utc) if state else None,
            state_updated=selectors.when(state.last_updated_date_time_utc) if state else None,
            device_info_json=(
                json.dumps(model.optional_device_information, indent=2, sort_keys=True)
                if model.optional_device_information
                else ""
            ),
        )
    return render(request, "enrollments/record_detail.html", ctx)


enrollment_detail, group_detail = _for_both(
    _detail, "read", "Show every field of an {title} (an enrollment's registration state too)."
)


#
# Create and edit
#


def _form_error(form: Any, exc: DpsError) -> None:
    text = exc.user_message
    if exc.message:
        text += f" DPS said: {exc.message}"
    if exc.tracking_id:
        text += f" (trackingId {exc.tracking_id})"
    form.add_error(None, text)


def _create(request: HttpRequest, kind: _Kind) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    form = kind.form_class(request.POST or None, **form_choices(request, instance))
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                created = services.record_create(
                    actor=request.user,
                    instance=instance,
                    client=_client(request),
                    model=form.build(),
                )
            except (DpsBadRequest, DpsConflict) as exc:
                _form_error(form, exc)
                status = exc.status or 400
            except DpsQuotaExceeded as exc:
                # The instance is full, not the user short of a role: say so in the form.
                _form_error(form, exc)
                status = 409
            except DpsError as exc:
                return dps_error(request, exc, kind.write)
            else:
                messages.success(request, f"Created {kind.noun} {created.id}.")
                return redirect(_url(kind, "detail", instance, created.id))
    ctx = _base(request, kind=kind, form=form, mode="create")
    return render(request, "enrollments/record_form.html", ctx, status=status)


def _edit(request: HttpRequest, kind: _Kind, key: str) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    client = _client(request)
    try:
        existing = kind.get(client, key)
    except DpsError as exc:
        return dps_error(request, exc, kind.read)
    caps = capabilities_resolve(request.user, instance)
    blocker = _edit_blocker(existing, caps)
    if blocker:
        return deny(
            request, reason=blocker, required=C.ATTESTATION_REVEAL.value, instance=instance.name
        )
    form = kind.form_class(
        request.POST or None, existing=existing, **form_choices(request, instance)
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            mine = None
            try:
                current_att = (
                    services.attestation_for_edit(client=client, model=existing)
                    if form.cleaned_data.get("attestation_keep")
                    else None
                )
                mine = form.build(current_att)
                updated = services.record_update(
                    actor=request.user,
                    instance=instance,
                    client=client,
                    model=mine,
                    etag=form.cleaned_data.get("etag"),
                    before=existing,
                )
            except DpsPreconditionFailed:
                return _conflict(request, kind, key, mine, client)
            except ValidationError as exc:
                form.add_error(None, exc)
            except (DpsBadRequest, DpsConflict, DpsQuotaExceeded) as exc:
                _form_error(form, exc)
            except DpsError as exc:
                return dps_error(request, exc, kind.write)
            else:
                messages.success(request, f"Saved {kind.noun} {updated.id}.")
                return redirect(_url(kind, "detail", instance, updated.id))
    ctx = _base(
        request,
        kind=kind,
        form=form,
        mode="edit",
        model=existing,
        key=key,
        certificates=selectors.certificate_rows(existing),
        needs_certificates=kind.form_class.needs_certificates(existing),
    )
    return render(request, "enrollments/record_form.html", ctx, status=status)


def _conflict(request: HttpRequest, kind: _Kind, key: str, mine: Any, client: Any) -> HttpResponse:
    """Show what changed in DPS beside what the user sent; offer to apply it on top."""
    try:
        current = kind.get(client, key)
    except DpsError as exc:
        return dps_error(request, exc, kind.read)
    ctx = _base(
        request,
        kind=kind,
        key=key,
        current=current,
        rows=diff_rows(current, mine),
        reapply=_reapply_fields(request.POST),
        current_etag=current.etag,
        updated=selectors.when(current.last_updated_date_time_utc),
    )
    return render(request, "enrollments/conflict.html", ctx, status=409)


enrollment_create, group_create = _for_both(
    _create, "write", "Create an {title}.", methods=("GET", "POST")
)


enrollment_edit, group_edit = _for_both(
    _edit, "write", "Edit an {title} with the ETag the user saw.", methods=("GET", "POST")
)


#
# Delete
#


def _confirm_delete(
    request: HttpRequest,
    *,
    fetch: Callable[[], Any],
    remove: Callable[[Any, str | None], None],
    template: str,
    ctx: dict[str, Any],
    needed: tuple[Capability, Capability],
    done: Callable[[], tuple[str, HttpResponse]],
) -> HttpResponse:
    """Show the record and ask; on POST delete it with the ETag the page carried.

    ``needed`` names the read and the delete capability (for DPS 403 pages); ``done`` returns
    the success message and the redirect once the record is gone.
    """
    try:
        model = fetch()
    except DpsError as exc:
        return dps_error(request, exc, needed[0])
    ctx = _base(request, **ctx, etag=model.etag)
    ctx.setdefault("model", model)
    if request.method != "POST":
        return render(request, template, ctx)
    try:
        remove(model, request.POST.get("etag"))
    except DpsPreconditionFailed:
        ctx["stale"] = True
        return render(request, template, ctx, status=409)
    except ValidationError as exc:
        ctx["error"] = " ".join(exc.messages)
        return render(request, template, ctx, status=400)
    except DpsError as exc:
        return dps_error(request, exc, needed[1])
    message, response = done()
    messages.success(request, message)
    return response


def _delete(request: HttpRequest, kind: _Kind, key: str) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    client = _client(request)
    return _confirm_delete(
        request,
        fetch=lambda: kind.get(client, key),
        remove=lambda model, etag: services.record_delete(
            actor=request.user,
            instance=instance,
            client=client,
            rt=kind.record,
            key=key,
            etag=etag,
            before=model,
        ),
        template="enrollments/confirm_delete.html",
        ctx={"kind": kind, "key": key},
        needed=(kind.read, kind.delete),
        done=lambda: (f"Deleted {kind.noun} {key}.", redirect(_url(kind, "list", instance))),
    )


enrollment_delete, group_delete = _for_both(
    _delete, "delete", "Confirm, then delete an {title} with its ETag.", methods=("GET", "POST")
)


#
# Enable / disable (htmx)
#


def _status(request: HttpRequest, kind: _Kind, key: str) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    client = _client(request)
    try:
        model = kind.get(client, key)
    except DpsError as exc:
        return dps_error(request, exc, kind.read)
    caps = capabilities_resolve(request.user, instance)
    blocker = _edit_blocker(model, caps)
    if blocker:
        return deny(
            request, reason=blocker, required=C.ATTESTATION_REVEAL.value, instance=instance.name
        )
    try:
        updated = services.record_status_set(
            actor=request.user,
            instance=instance,
            client=client,
            model=model,
            status=request.POST.get("status", ""),
            etag=request.POST.get("etag"),
        )
    except DpsPreconditionFailed:
        if _is_htmx(request):
            response = render(
                request,
                "enrollments/_alert.html",
                {
                    "level": "warning",
                    "text": f"{key} changed in DPS since the page was shown; "
                    "reload the page and try again.",
                },
                status=412,
            )
            response["HX-Retarget"] = "#dps-alerts"
            response["HX-Reswap"] = "innerHTML"
            return response
        messages.warning(request, f"{key} changed in DPS since you saw it; nothing was changed.")
        return redirect(_url(kind, "detail", instance, key))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_url(kind, "detail", instance, key))
    except DpsError as exc:
        return dps_error(request, exc, kind.write)
    if _is_htmx(request):
        caps = capabilities_resolve(request.user, instance)
        url = _url(kind, "status", instance, key)
        ctx = {"cell": status_cell(kind, updated, key, caps, "", url)}
        return render(request, "enrollments/_status_cell.html", ctx)
    messages.success(
        request, f"{kind.noun.capitalize()} {key} is now {updated.provisioning_status}."
    )
    return redirect(_url(kind, "detail", instance, key))


enrollment_status, group_status = _for_both(
    _status, "write", "Enable or disable an {title} inline.", methods=("POST",), cached=False
)


#
# Keys
#


def _reveal(request: HttpRequest, kind: _Kind, key: str) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    try:
        att = services.attestation_reveal(
            actor=request.user,
            instance=instance,
            client=_client(request),
            target_type=kind.target_type,
            target_id=key,
        )
    except DpsError as exc:
        return dps_error(request, exc, C.ATTESTATION_REVEAL)
    ctx = _base(request, kind=kind, key=key, att=att)
    return render(request, "enrollments/_revealed.html", ctx)


enrollment_reveal, group_reveal = _for_both(
    _reveal, "reveal", "Show the keys of an {title} (audited).", methods=("POST",)
)


@never_cache
@require_POST
@capability_required(C.ATTESTATION_REVEAL)
def group_device_key(request: HttpRequest, instance: str, key: str) -> HttpResponse:
    """Derive the device keys of a registration ID from a symmetric-key group (audited)."""
    form = DeviceKeyForm(request.POST)
    ctx = _base(request, kind=GROUPS, key=key, form=form)
    if not form.is_valid():
        return render(request, "enrollments/_device_key.html", ctx, status=400)
    try:
        ctx["keys"] = services.device_key_compute(
            actor=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            client=_client(request),
            group_id=key,
            registration_id=form.cleaned_data["registration_id"],
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return render(request, "enrollments/_device_key.html", ctx, status=400)
    except DpsError as exc:
        return dps_error(request, exc, C.ATTESTATION_REVEAL)
    return render(request, "enrollments/_device_key.html", ctx)


#
# Registration records
#


@never_cache
@capability_required(C.REGISTRATIONS_READ)
def registration_list(request: HttpRequest, instance: str, key: str) -> HttpResponse:
    """List the registration records of a group's devices, one page at a time."""
    size = selectors.page_size_from(request.GET.get("size"))
    ct = request.GET.get("ct") or None
    try:
        page = selectors.registration_page(
            client=_client(request), group_id=key, page_size=size, continuation=ct
        )
    except DpsError as exc:
        return dps_error(request, exc, C.REGISTRATIONS_READ)
    rows = [
        {"record": r, "updated": selectors.when(r.last_updated_date_time_utc)} for r in page.items
    ]
    ctx = _base(
        request,
        kind=GROUPS,
        key=key,
        rows=rows,
        page=page,
        size=size,
        sizes=selectors.PAGE_SIZES,
        ct=ct,
    )
    return render(request, "enrollments/registration_list.html", ctx)


@never_cache
@capability_required(C.REGISTRATIONS_READ)
def registration_detail(request: HttpRequest, instance: str, key: str) -> HttpResponse:
    """Show a device's registration record."""
    try:
        record = selectors.registration_get(client=_client(request), registration_id=key)
    except DpsError as exc:
        return dps_error(request, exc, C.REGISTRATIONS_READ)
    ctx = _base(
        request,
        section="group",
        record=record,
        key=key,
        group=request.GET.get("group", ""),
        created=selectors.when(record.created_date_time_utc),
        updated=selectors.when(record.last_updated_date_time_utc),
        payload_json=json.dumps(record.payload, indent=2, sort_keys=True) if record.payload else "",
    )
    return render(request, "enrollments/registration_detail.html", ctx)


@never_cache
@require_http_methods(["GET", "POST"])
@capability_required(C.REGISTRATIONS_DELETE)
def registration_delete(request: HttpRequest, instance: str, key: str) -> HttpResponse:
    """Confirm, then delete one registration record with its ETag."""
    client = _client(request)
    group = request.GET.get("group") or request.POST.get("group") or ""

    def done() -> tuple[str, HttpResponse]:
        back = (
            redirect("enrollments:registration_list", instance, group)
            if group
            else redirect("enrollments:enrollment_list", instance)
        )
        return f"Deleted the registration record of {key}.", back

    return _confirm_delete(
        request,
        fetch=lambda: selectors.registration_get(client=client, registration_id=key),
        remove=lambda record, etag: services.registration_delete(
            actor=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            client=client,
            registration_id=key,
            etag=etag,
            before=record,
        ),
        template="enrollments/registration_confirm_delete.html",
        ctx={"section": "group", "key": key, "group": group},
        needed=(C.REGISTRATIONS_READ, C.REGISTRATIONS_DELETE),
        done=done,
    )


def _selected(request: HttpRequest) -> list[tuple[str, str]]:
    items = []
    for value in request.POST.getlist("selected"):
        rid, _, etag = value.partition("|")
        if rid.strip():
            items.append((rid.strip(), etag.strip()))
    return list(dict.fromkeys(items))


@never_cache
@require_POST
@capability_required(C.REGISTRATIONS_DELETE)
def registration_delete_selected(request: HttpRequest, instance: str, key: str) -> HttpResponse:
    """Confirm, then delete the selected registration records of a group, each with its ETag."""
    items = _selected(request)
    ctx = _base(request, kind=GROUPS, key=key, items=items)
    if not items:
        messages.warning(request, "Select at least one registration record.")
        return redirect("enrollments:registration_list", instance, key)
    if request.POST.get("confirm") != "yes":
        return render(request, "enrollments/registration_confirm_selected.html", ctx)
    ctx["results"] = services.registrations_delete_selected(
        actor=request.user,
        instance=request.dps_instance,  # type: ignore[attr-defined]
        client=_client(request),
        items=items,
    )
    ctx["failed"] = sum(1 for r in ctx["results"] if not r.ok)
    return render(request, "enrollments/registration_results.html", ctx)


@never_cache
@capability_required(C.ENROLLMENTS_READ)
def instance_home(request: HttpRequest, instance: str) -> HttpResponse:
    """Land on the instance's individual enrollments."""
    return redirect("enrollments:enrollment_list", instance)
