"""The Certificates page and the linked hubs page of a DPS instance (thin: logic in services)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from authn.arm import ArmError
from authn.capabilities import ControlCapability, capabilities_resolve
from controlplane import selectors, services
from controlplane.arm import explain
from controlplane.decorators import control_capability_required
from controlplane.forms import EtagForm, UploadForm, VerifyForm

C = ControlCapability


def _code_key(instance: str, name: str) -> str:
    return f"controlplane:code:{instance}:{name}"


def _page(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    instance = request.dps_instance  # type: ignore[attr-defined]
    caps = capabilities_resolve(request.user, instance)
    error = ""
    try:
        certificates = selectors.certificate_list(request.user, instance)
    except ArmError as exc:
        certificates, error = [], explain(exc, what="The certificate list")
    rows = [
        {
            "cert": c,
            "code": request.session.get(_code_key(instance.name, c.name), ""),
            "expiring": c.expires_within(selectors.EXPIRING_DAYS),
        }
        for c in certificates
    ]
    context = {
        "instance": instance,
        "caps": caps,
        "section": "certificates",
        "rows": rows,
        "error": error,
        "expiring_days": selectors.EXPIRING_DAYS,
        "upload_form": extra.pop("upload_form", None) or UploadForm(),
        **extra,
    }
    return render(request, "controlplane/certificate_list.html", context, status=status)


@require_GET
@control_capability_required(C.CERTIFICATES_READ)
def certificate_list(request: HttpRequest, instance: str) -> HttpResponse:
    """List the instance's CA certificates with the actions the user's roles allow."""
    return _page(request)


@require_POST
@control_capability_required(C.CERTIFICATES_WRITE)
def certificate_upload(request: HttpRequest, instance: str) -> HttpResponse:
    """Upload a CA certificate (PEM or CER), optionally verified on upload."""
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, status=400, upload_form=form)
    if form.cleaned_data["verified"] and C.CERTIFICATES_VERIFY.value not in capabilities_resolve(
        request.user,
        request.dps_instance,  # type: ignore[attr-defined]
    ):
        form.add_error("verified", "Your Azure role cannot verify certificates.")
        return _page(request, status=403, upload_form=form)
    try:
        cert = services.certificate_upload(
            user=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            name=form.cleaned_data["name"],
            data=form.cleaned_data["file"],
            verified=form.cleaned_data["verified"],
        )
    except services.CertificateActionError as exc:
        form.add_error("file", str(exc))
        return _page(request, status=400, upload_form=form)
    messages.success(request, f"Certificate {cert.name} uploaded ({cert.subject}).")
    return redirect("controlplane:certificate_list", instance)


@require_POST
@control_capability_required(C.CERTIFICATES_VERIFY)
def certificate_code(request: HttpRequest, instance: str, name: str) -> HttpResponse:
    """Generate a verification code and keep it in the session for the instructions."""
    form = EtagForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The form lacked the certificate's ETag; reload the page.")
        return redirect("controlplane:certificate_list", instance)
    try:
        cert, code = services.certificate_generate_code(
            user=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            name=name,
            etag=form.cleaned_data["etag"],
        )
    except services.CertificateActionError as exc:
        messages.error(request, str(exc))
        return redirect("controlplane:certificate_list", instance)
    request.session[_code_key(instance, name)] = code
    messages.success(
        request, f"Verification code for {cert.name}: {code}. Sign it with the CA's key (below)."
    )
    return redirect("controlplane:certificate_list", instance)


@require_POST
@control_capability_required(C.CERTIFICATES_VERIFY)
def certificate_verify(request: HttpRequest, instance: str, name: str) -> HttpResponse:
    """Upload the verification certificate; DPS marks the CA verified if the proof holds."""
    form = VerifyForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose the verification certificate file (PEM or CER).")
        return redirect("controlplane:certificate_list", instance)
    try:
        cert = services.certificate_verify(
            user=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            name=name,
            etag=form.cleaned_data["etag"],
            data=form.cleaned_data["file"],
        )
    except services.CertificateActionError as exc:
        messages.error(request, f"Certificate {name} was not verified. {exc}")
        return redirect("controlplane:certificate_list", instance)
    request.session.pop(_code_key(instance, name), None)
    messages.success(request, f"Certificate {cert.name} is verified.")
    return redirect("controlplane:certificate_list", instance)


@require_POST
@control_capability_required(C.CERTIFICATES_DELETE)
def certificate_delete(request: HttpRequest, instance: str, name: str) -> HttpResponse:
    """Delete a certificate with the ETag the user saw."""
    form = EtagForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The form lacked the certificate's ETag; reload the page.")
        return redirect("controlplane:certificate_list", instance)
    try:
        services.certificate_delete(
            user=request.user,
            instance=request.dps_instance,  # type: ignore[attr-defined]
            name=name,
            etag=form.cleaned_data["etag"],
        )
    except services.CertificateActionError as exc:
        messages.error(request, f"Certificate {name} was not deleted. {exc}")
        return redirect("controlplane:certificate_list", instance)
    request.session.pop(_code_key(instance, name), None)
    messages.success(request, f"Certificate {name} deleted.")
    return redirect("controlplane:certificate_list", instance)


@require_http_methods(["GET", "POST"])
@control_capability_required(C.INSTANCE_READ)
def hub_list(request: HttpRequest, instance: str) -> HttpResponse:
    """Show the linked IoT hubs (cached per instance; POST refreshes them from ARM)."""
    dps = request.dps_instance  # type: ignore[attr-defined]
    hubs = selectors.linked_hubs(request.user, dps, refresh=request.method == "POST")
    if request.method == "POST":
        return redirect("controlplane:hub_list", instance)
    return render(
        request,
        "controlplane/hub_list.html",
        {
            "instance": dps,
            "caps": capabilities_resolve(request.user, dps),
            "section": "hubs",
            "hubs": hubs,
        },
    )
