"""Sign-in, sign-out and permission refresh."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from authn import services
from authn.capabilities import capabilities_invalidate_all
from authn.exceptions import SigninError, SigninUnavailable

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
