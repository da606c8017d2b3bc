"""The attestation columns of a row: which kind, its cells checked, the body built.

The body comes from :mod:`enrollments.attestation`, the builder the enrollment form uses too;
this module decides from the cells which of its functions applies and checks each cell with
the shared validators, recording errors by column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from enrollments import validation as v
from enrollments.attestation import (
    AttestationBody,
    CertificateSlot,
    ca_reference_attestation,
    certificate_attestation,
    certificate_slot,
    symmetric_key_attestation,
    tpm_attestation,
)
from enrollments.csv.fast import memo, plain_key, symmetric_key
from enrollments.csv.row import RowError, add_error, check
from enrollments.dps.types import ATTESTATION_TYPES

Cells = Mapping[str, str]

#: Each attestation column and the kind it belongs to.
_ATTESTATION_COLUMNS = (
    ("tpmEndorsementKey", "tpm"),
    ("tpmStorageRootKey", "tpm"),
    ("symmetricKeyPrimary", "symmetricKey"),
    ("symmetricKeySecondary", "symmetricKey"),
    ("x509CertificatePrimary", "x509"),
    ("x509CertificateSecondary", "x509"),
    ("x509CaReferencePrimary", "x509"),
    ("x509CaReferenceSecondary", "x509"),
)
#: Canonical attestation spellings, accepted without a validator call.
_KINDS = {t: t for t in ATTESTATION_TYPES if t != "none"}
#: Per attestation kind, the columns that belong to another kind.
_FOREIGN_COLUMNS = {
    kind: tuple((column, owner) for column, owner in _ATTESTATION_COLUMNS if owner != kind)
    for kind in _KINDS
}


def attestation_of(c: Cells, errors: list[RowError]) -> AttestationBody | None:
    """Return the attestation body of a row's cells (None when it has an error, recorded)."""
    kind_text = c.get("attestationType", "").strip()
    if not kind_text:
        add_error(errors, "attestationType", "Choose an attestation: tpm, x509 or symmetricKey.")
        return None
    kind = _KINDS.get(kind_text) or check(
        errors,
        "attestationType",
        memo,
        ("att", kind_text),
        v.validate_attestation_type,
        kind_text,
    )
    if kind is None:
        return None
    for column, owner in _FOREIGN_COLUMNS[kind]:
        cell = c.get(column)
        if cell and cell.strip():
            add_error(
                errors,
                column,
                f"This column belongs to {owner} attestation, but the row says {kind}.",
            )
    return _BY_KIND[kind](c, errors)


def _tpm(c: Cells, errors: list[RowError]) -> AttestationBody | None:
    ek = check(errors, "tpmEndorsementKey", v.validate_endorsement_key, c.get("tpmEndorsementKey"))
    srk = check(
        errors, "tpmStorageRootKey", v.validate_storage_root_key, c.get("tpmStorageRootKey")
    )
    if ek is None:
        return None
    return tpm_attestation(ek, srk)


def _symmetric_key(c: Cells, errors: list[RowError]) -> AttestationBody:
    # Inline fast checks: most rows of a big import are symmetric keys.
    primary = c.get("symmetricKeyPrimary")
    if primary and not plain_key(primary):
        primary = check(errors, "symmetricKeyPrimary", symmetric_key, primary, "The primary key")
    secondary = c.get("symmetricKeySecondary")
    if secondary and not plain_key(secondary):
        secondary = check(
            errors, "symmetricKeySecondary", symmetric_key, secondary, "The secondary key"
        )
    return symmetric_key_attestation(primary, secondary)


def _x509(c: Cells, errors: list[RowError]) -> AttestationBody | None:
    """Client certificates, or CA references, or (for an unchanged record) thumbprints."""
    cert1 = c.get("x509CertificatePrimary", "").strip()
    cert2 = c.get("x509CertificateSecondary", "").strip()
    ca1 = c.get("x509CaReferencePrimary", "").strip()
    ca2 = c.get("x509CaReferenceSecondary", "").strip()
    if (cert1 or cert2) and (ca1 or ca2):
        add_error(
            errors, "x509CaReferencePrimary", "Give client certificates or CA references, not both."
        )
        return None
    if ca1 or ca2:
        return _ca_references(ca1, ca2, errors)
    if cert1:
        return _certificates(cert1, cert2, errors)
    if cert2:
        add_error(errors, "x509CertificatePrimary", "A secondary certificate needs a primary one.")
        return None
    return _thumbprints(c, errors)


def _ca_references(ca1: str, ca2: str, errors: list[RowError]) -> AttestationBody | None:
    if not ca1:
        add_error(errors, "x509CaReferencePrimary", "A secondary CA reference needs a primary one.")
        return None
    primary = check(errors, "x509CaReferencePrimary", v.validate_ca_reference, ca1)
    secondary = (
        check(errors, "x509CaReferenceSecondary", v.validate_ca_reference, ca2) if ca2 else None
    )
    if primary is None:
        return None
    return ca_reference_attestation(primary, secondary)


def _certificates(cert1: str, cert2: str, errors: list[RowError]) -> AttestationBody | None:
    primary = _certificate(errors, "x509CertificatePrimary", cert1)
    secondary = _certificate(errors, "x509CertificateSecondary", cert2) if cert2 else None
    if primary is None:
        return None
    return certificate_attestation(primary, secondary)


def _certificate(errors: list[RowError], column: str, text: str) -> CertificateSlot | None:
    # The text is sent as given (PEM or base64); the thumbprint is what the preview compares.
    info = check(errors, column, v.validate_certificate, text)
    if info is None:
        return None
    return certificate_slot(text, sha256_thumbprint=info.sha256_thumbprint)


def _thumbprints(c: Cells, errors: list[RowError]) -> AttestationBody | None:
    thumb1 = c.get("x509ThumbprintPrimary", "").strip().upper()
    thumb2 = c.get("x509ThumbprintSecondary", "").strip().upper()
    if not thumb1:
        add_error(
            errors,
            "x509CertificatePrimary",
            "X.509 attestation needs a client certificate (PEM or base64) or a CA reference.",
        )
        return None
    # Export writes thumbprints, DPS never returns certificates: the row can only be
    # compared, and is refused at preview if anything else about it changed.
    secondary = certificate_slot(sha256_thumbprint=thumb2) if thumb2 else None
    body = certificate_attestation(certificate_slot(sha256_thumbprint=thumb1), secondary)
    body["thumbprintOnly"] = True
    return body


_BY_KIND: dict[str, Callable[[Cells, list[RowError]], AttestationBody | None]] = {
    "tpm": _tpm,
    "symmetricKey": _symmetric_key,
    "x509": _x509,
}
