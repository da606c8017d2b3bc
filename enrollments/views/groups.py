"""Pages of enrollment groups, and the device keys derived from a symmetric-key group."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from authn.decorators import capability_required
from authn.permissions import Capability as C
from authn.request import PortalRequest
from enrollments import selectors, services
from enrollments.forms import DeviceKeyForm, EnrollmentGroupForm
from enrollments.views import generic, kinds
from enrollments.views.context import page_context
from enrollments.views.errors import dps_errors

GROUPS = kinds.RecordKind(
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


class GroupListView(generic.RecordListView):
    """List enrollment groups one page at a time."""

    kind = GROUPS


class GroupDetailView(generic.RecordDetailView):
    """Show every field of an enrollment group."""

    kind = GROUPS


class GroupCreateView(generic.RecordCreateView):
    """Create an enrollment group."""

    kind = GROUPS


class GroupEditView(generic.RecordEditView):
    """Edit an enrollment group with the ETag the user saw."""

    kind = GROUPS


class GroupDeleteView(generic.RecordDeleteView):
    """Confirm, then delete an enrollment group with its ETag."""

    kind = GROUPS


class GroupStatusView(generic.RecordStatusView):
    """Enable or disable an enrollment group inline."""

    kind = GROUPS


class GroupRevealView(generic.RecordRevealView):
    """Show the keys of an enrollment group (audited)."""

    kind = GROUPS


group_list = GroupListView.as_view()
group_detail = GroupDetailView.as_view()
group_create = GroupCreateView.as_view()
group_edit = GroupEditView.as_view()
group_delete = GroupDeleteView.as_view()
group_status = GroupStatusView.as_view()
group_reveal = GroupRevealView.as_view()


@never_cache
@require_POST
@capability_required(C.ATTESTATION_REVEAL)
@dps_errors(C.ATTESTATION_REVEAL)
def group_device_key(request: PortalRequest, instance: str, key: str) -> HttpResponse:
    """Derive the device keys of a registration ID from a symmetric-key group (audited)."""
    form = DeviceKeyForm(request.POST)
    ctx = page_context(request, GROUPS.name, kind=GROUPS, key=key, form=form)
    if not form.is_valid():
        return render(request, "enrollments/_device_key.html", ctx, status=400)
    try:
        ctx["keys"] = services.device_key_compute(
            actor=request.user,
            instance=request.dps_instance,
            client=generic.dps_client(request),
            group_id=key,
            registration_id=form.cleaned_data["registration_id"],
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return render(request, "enrollments/_device_key.html", ctx, status=400)
    return render(request, "enrollments/_device_key.html", ctx)
