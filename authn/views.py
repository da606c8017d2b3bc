"""Sign-in, sign-out, permission refresh and the DPS instance registry page."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from authn import services
from authn.backends import PORTAL_ADMIN
from authn.capabilities import capabilities_invalidate_all
from authn.decorators import permission_required
from authn.exceptions import SigninError, SigninUnavailable
from authn.forms import DpsInstanceForm
from authn.models import DpsInstance

log = logging.getLogger(__name__)


# -- sign-in / sign-out ------------------------------------------------------------------------
@never_cache
@require_GET
def login(request: HttpRequest) -> HttpResponse:
    """Send the browser to Entra ID's sign-in page."""
    try:
        auth_uri = services.signin_start(request=request, next_url=request.GET.get("next"))
    except SigninUnavailable as exc:
        return render(request, "authn/signin_error.html", {"message": str(exc)}, status=503)
    return HttpResponseRedirect(auth_uri)


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Finish the sign-in Entra ID redirects back to (``?code=&state=``)."""
    try:
        result = services.signin_complete(request=request)
    except SigninUnavailable as exc:
        return render(request, "authn/signin_error.html", {"message": str(exc)}, status=503)
    except SigninError as exc:
        return render(
            request, "authn/signin_error.html", {"message": str(exc), "code": exc.code}, status=400
        )
    return HttpResponseRedirect(result.next_url)


@never_cache
@require_POST
@sensitive_post_parameters()
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here and at Entra ID."""
    return HttpResponseRedirect(services.signout(request=request))


@never_cache
@require_POST
def permissions_refresh(request: HttpRequest) -> HttpResponse:
    """Drop the cached capabilities so the next page asks ARM again."""
    if not request.user.is_authenticated:
        return redirect("authn:login")
    capabilities_invalidate_all(request.user)
    messages.info(request, "Your permissions were read again from Azure.")
    return HttpResponseRedirect(services.safe_next_url(request, request.POST.get("next")))


# -- DPS instance registry (Portal.Admin) ---------------------------------------------------------
@never_cache
@permission_required(PORTAL_ADMIN)
def instance_list(request: HttpRequest) -> HttpResponse:
    """List the registered DPS instances and register a new one."""
    form = DpsInstanceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.dps_instance_upsert(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:  # the host ARM reports differs (checked with a token)
            form.add_error(None, exc)
        else:
            messages.success(request, f"Registered {form.cleaned_data['name']}.")
            return redirect("authn:instance_list")
    return render(
        request,
        "authn/instance_list.html",
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
        services.dps_instance_upsert(
            actor=request.user,
            name=instance.name,
            host=instance.host,
            resource_id=instance.resource_id,
            enabled=not instance.enabled,
        )
    except ValidationError as exc:  # switching on an instance whose host is refused
        messages.error(request, f"{instance.name} stays off: {' '.join(exc.messages)}")
    return redirect("authn:instance_list")
