"""X.509 CA attestation on the device API: a device certificate issued by a verified CA.

The device presents its certificate in the TLS handshake (emulators/common/client_cert.py);
its subject common name is the registration id. An enrollment group whose
``attestation.x509.caReferences`` names a CA certificate the ARM emulator holds as verified
for this instance takes the device when that CA's key signed the device certificate directly
(intermediate certificates are not followed). Individual X.509 enrollments are not modelled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from starlette.requests import Request

from emulators.common.client_cert import CLIENT_CERT_STATE
from emulators.common.context import EmulatorContext
from emulators.common.tenant import DpsInstance
from emulators.dps.store import DpsStore


def _ca_groups(store: DpsStore) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page = store.list_groups(after, 500)
        for group in page.items:
            x = (group.get("attestation") or {}).get("x509") or {}
            if x.get("caReferences"):
                yield group
        if page.next_after is None:
            return
        after = page.next_after


def client_certificate(request: Request) -> x509.Certificate | None:
    der = (request.scope.get("state") or {}).get(CLIENT_CERT_STATE)
    if not der:
        return None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def authenticate(
    ctx: EmulatorContext,
    instance: DpsInstance,
    store: DpsStore,
    request: Request,
    registration_id: str,
) -> tuple[dict[str, Any], str | None] | None:
    """Return (group, group id) whose verified CA issued the device's certificate, or None."""
    leaf = client_certificate(request)
    certificates = ctx.arm_certificates
    if leaf is None or certificates is None:
        return None
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or str(names[0].value).lower() != registration_id.lower():
        return None
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return None
    if store.get_enrollment(registration_id) is not None:
        return None  # an individual enrollment takes precedence; X.509 ones are not modelled
    verified = {c.name.lower(): c.cert for c in certificates.verified(instance.resource_id)}
    for group in _ca_groups(store):
        refs = group["attestation"]["x509"]["caReferences"]
        for ref in (refs.get("primary"), refs.get("secondary")):
            ca = verified.get(str(ref or "").lower())
            if ca is not None and _issued_by(leaf, ca):
                return group, str(group["enrollmentGroupId"])
    return None
