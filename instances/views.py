"""The DPS instance registry page (Portal.Admin): list, register, switch on and off."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from authn.backends import PORTAL_ADMIN
from authn.decorators import permission_required
from instances.forms import DpsInstanceForm
from instances.models import DpsInstance
from instances.services import dps_instance_upsert


@never_cache
@permission_required(PORTAL_ADMIN)
def instance_list(request: HttpRequest) -> HttpResponse:
    """List the registered DPS instances and register a new one."""
    form = DpsInstanceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dps_instance_upsert(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:  # the host ARM reports differs (checked with a token)
            form.add_error(None, exc)
        else:
            messages.success(request, f"Registered {form.cleaned_data['name']}.")
            return redirect("authn:instance_list")
    return render(
        request,
        "instances/instance_list.html",
        {"instances": DpsInstance.objects.all(), "form": form},
        status=400 if form.errors else 200,
    )


@never_cache
@require_POST
@permission_required(PORTAL_ADMIN)
def instance_toggle(request: HttpRequest, name: str) -> HttpResponse:
    """Enable or disable an instance."""
    instance = get_object_or_404(DpsInstance, name=name)
    try:
        dps_instance_upsert(
            actor=request.user,
            name=instance.name,
            host=instance.host,
            resource_id=instance.resource_id,
            enabled=not instance.enabled,
        )
    except ValidationError as exc:  # switching on an instance whose host is refused
        messages.error(request, f"{instance.name} stays off: {' '.join(exc.messages)}")
    return redirect("authn:instance_list")
