"""Reads of DPS enrollments, groups and registration records, shaped for the pages.

DPS has no server-side search or sort: lists follow the continuation token forward, one
page per request (docs/architecture.md, "The request path").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrollments.dps.types import (
    DeviceRegistrationState,
    DpsApi,
    EnrollmentGroup,
    IndividualEnrollment,
    QueryPage,
    X509CertificateInfo,
    parse_dps_datetime,
)

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25


def page_size_from(value: Any) -> int:
    """Return the page size asked for, or the default when it is not one of the choices."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def attestation_label(model: IndividualEnrollment | EnrollmentGroup) -> str:
    """Return the attestation in words: TPM, X.509 (certificates / CA), symmetric key."""
    att = model.attestation
    if att.type == "tpm":
        return "TPM"
    if att.type == "symmetricKey":
        return "Symmetric key"
    if att.type == "x509":
        x = att.x509
        if x and x.ca_references:
            return "X.509 (CA reference)"
        if x and x.signing_certificates:
            return "X.509 (signing certificate)"
        return "X.509 (client certificate)"
    return att.type


@dataclass(frozen=True)
class CertificateRow:
    """One certificate DPS parsed, as the detail page shows it."""

    slot: str
    subject: str
    issuer: str
    sha1: str
    sha256: str
    not_before: datetime | None
    not_after: datetime | None
    serial: str


def certificate_rows(model: IndividualEnrollment | EnrollmentGroup) -> list[CertificateRow]:
    """Return the parsed certificates of an X.509 attestation (DPS returns only their info)."""
    x = model.attestation.x509
    certs = x and (x.client_certificates or x.signing_certificates)
    rows = []
    for slot in ("primary", "secondary"):
        item = getattr(certs, slot, None) if certs else None
        info: X509CertificateInfo | None = item.info if item else None
        if info is None:
            continue
        rows.append(
            CertificateRow(
                slot=slot,
                subject=info.subject_name or "",
                issuer=info.issuer_name or "",
                sha1=info.sha1_thumbprint or "",
                sha256=info.sha256_thumbprint or "",
                not_before=parse_dps_datetime(info.not_before_utc),
                not_after=parse_dps_datetime(info.not_after_utc),
                serial=info.serial_number or "",
            )
        )
    return rows


def when(value: str | None) -> datetime | None:
    """Return a DPS timestamp as a datetime (None when absent or unreadable)."""
    try:
        return parse_dps_datetime(value)
    except ValueError:
        return None


def enrollment_page(
    *, client: DpsApi, page_size: int, continuation: str | None
) -> QueryPage[IndividualEnrollment]:
    """Return one page of individual enrollments."""
    return client.enrollment_query(page_size=page_size, continuation=continuation or None)


def enrollment_get(*, client: DpsApi, registration_id: str) -> IndividualEnrollment:
    """Return one individual enrollment with its registration state (keys masked)."""
    return client.enrollment_get(registration_id)


def group_page(
    *, client: DpsApi, page_size: int, continuation: str | None
) -> QueryPage[EnrollmentGroup]:
    """Return one page of enrollment groups."""
    return client.group_query(page_size=page_size, continuation=continuation or None)


def group_get(*, client: DpsApi, group_id: str) -> EnrollmentGroup:
    """Return one enrollment group (keys masked)."""
    return client.group_get(group_id)


def registration_page(
    *, client: DpsApi, group_id: str, page_size: int, continuation: str | None
) -> QueryPage[DeviceRegistrationState]:
    """Return one page of the registration records of a group's devices."""
    return client.registration_query_for_group(
        group_id, page_size=page_size, continuation=continuation or None
    )


def registration_get(*, client: DpsApi, registration_id: str) -> DeviceRegistrationState:
    """Return a device's registration record."""
    return client.registration_get(registration_id)
