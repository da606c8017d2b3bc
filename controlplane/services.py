"""Changes to an instance's CA certificates through ARM, as the user; every one audited.

Each function returns the certificate as ARM answered it, or raises
:class:`CertificateActionError` with a message for the page after recording the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audit.models import AuditOutcome
from audit.services import audit_record
from authn.arm import ArmClient, ArmError, ArmForbidden, ArmPreconditionFailed
from authn.capabilities import capabilities_invalidate
from controlplane.arm import arm_client, arm_token, explain
from controlplane.pem import CertificateInputError, UploadedCertificate, load, load_ca
from controlplane.types import CaCertificate
from instances.models import DpsInstance

# Audit actions (values of audit events' ``action``; the audit pages show them as they are).
CERTIFICATE_UPLOAD = "certificate_upload"
CERTIFICATE_CODE = "certificate_code"
CERTIFICATE_VERIFY = "certificate_verify"
CERTIFICATE_DELETE = "certificate_delete"
TARGET = "certificate"


class CertificateActionError(Exception):
    """The action did not happen; ``str(exc)`` says why, for the user."""


def _record(
    user: Any, instance: DpsInstance, action: str, name: str, outcome: str, **details: Any
) -> None:
    audit_record(
        actor=user,
        action=action,
        outcome=outcome,
        target_type=TARGET,
        target_id=name,
        dps_instance=instance.name,
        **details,
    )


def _audited(
    *,
    user: Any,
    instance: DpsInstance,
    action: str,
    name: str,
    call: Callable[[], dict[str, Any]],
    before: dict[str, Any] | None = None,
    on_precondition: str = "",
) -> dict[str, Any]:
    try:
        answer = call()
    except ArmError as exc:
        denied = isinstance(exc, ArmForbidden)
        if denied:
            capabilities_invalidate(user, instance)
        message = explain(exc, what=f"Certificate {name}")
        if on_precondition and isinstance(exc, ArmPreconditionFailed):
            message = on_precondition
        outcome = AuditOutcome.DENIED if denied else AuditOutcome.FAILED
        _record(
            user,
            instance,
            action,
            name,
            outcome,
            before=before,
            message=message,
            dps_status=exc.status,
            dps_error_code=exc.code,
        )
        raise CertificateActionError(message) from None
    after = CaCertificate.from_arm(answer).as_audit() if answer else None
    _record(user, instance, action, name, AuditOutcome.SUCCESS, before=before, after=after)
    return answer


def _parsed(
    parse: Callable[[bytes], UploadedCertificate],
    data: bytes,
    *,
    user: Any,
    instance: DpsInstance,
    action: str,
    name: str,
) -> UploadedCertificate:
    """Parse an upload; record a refusal by the portal (before any ARM call) and raise."""
    try:
        return parse(data)
    except CertificateInputError as exc:
        _record(
            user,
            instance,
            action,
            name,
            AuditOutcome.FAILED,
            message=f"refused by the portal: {exc}",
        )
        raise CertificateActionError(str(exc)) from None


def certificate_upload(
    *,
    user: Any,
    instance: DpsInstance,
    name: str,
    data: bytes,
    verified: bool = False,
    etag: str | None = None,
    arm: ArmClient | None = None,
) -> CaCertificate:
    """Upload a CA certificate (PEM or CER); ``verified`` marks it verified on upload."""
    uploaded = _parsed(
        load_ca, data, user=user, instance=instance, action=CERTIFICATE_UPLOAD, name=name
    )
    client = arm or arm_client()
    answer = _audited(
        user=user,
        instance=instance,
        action=CERTIFICATE_UPLOAD,
        name=name,
        call=lambda: client.certificate_put(
            instance.resource_id,
            name,
            uploaded.base64_pem,
            arm_token(user),
            is_verified=verified,
            etag=etag,
        ),
        # Without an ETag the PUT only creates: a 412 means the name is taken.
        on_precondition=""
        if etag
        else f"A certificate named {name} already exists; delete it first or choose another name.",
    )
    return CaCertificate.from_arm(answer)


def certificate_generate_code(
    *, user: Any, instance: DpsInstance, name: str, etag: str, arm: ArmClient | None = None
) -> tuple[CaCertificate, str]:
    """Ask DPS for a verification code; return the certificate and the code."""
    client = arm or arm_client()
    answer = _audited(
        user=user,
        instance=instance,
        action=CERTIFICATE_CODE,
        name=name,
        call=lambda: client.certificate_generate_code(
            instance.resource_id, name, etag, arm_token(user)
        ),
    )
    props = answer.get("properties") if isinstance(answer.get("properties"), dict) else {}
    code = str(props.get("verificationCode") or "") if isinstance(props, dict) else ""
    return CaCertificate.from_arm(answer), code


def certificate_verify(
    *,
    user: Any,
    instance: DpsInstance,
    name: str,
    etag: str,
    data: bytes,
    arm: ArmClient | None = None,
) -> CaCertificate:
    """Send the verification certificate; DPS checks its subject and signature."""
    proof = _parsed(load, data, user=user, instance=instance, action=CERTIFICATE_VERIFY, name=name)
    client = arm or arm_client()
    answer = _audited(
        user=user,
        instance=instance,
        action=CERTIFICATE_VERIFY,
        name=name,
        call=lambda: client.certificate_verify(
            instance.resource_id, name, etag, proof.pem, arm_token(user)
        ),
    )
    return CaCertificate.from_arm(answer)


def certificate_delete(
    *, user: Any, instance: DpsInstance, name: str, etag: str, arm: ArmClient | None = None
) -> None:
    """Delete a certificate only if its ETag is still the one the user saw."""
    client = arm or arm_client()

    def call() -> dict[str, Any]:
        client.certificate_delete(instance.resource_id, name, etag, arm_token(user))
        return {}

    _audited(
        user=user,
        instance=instance,
        action=CERTIFICATE_DELETE,
        name=name,
        call=call,
        before={"etag": etag},
    )
