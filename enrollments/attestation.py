"""Build the ``attestation`` body DPS takes: the one builder the form and the CSV import share.

Each function takes values already checked by :mod:`enrollments.validation` and returns the
JSON of an attestation mechanism (the service API's ``AttestationMechanism``). The form turns it into an
:class:`~enrollments.dps.types.AttestationMechanism`; the CSV import stores it as it is. Plain
dicts rather than dataclasses: the import builds one per row, and at 100,000 rows a model
round trip per row would cost more than parsing the row.
"""

from __future__ import annotations

from typing import Any

#: The JSON of an attestation mechanism (``{"type": ..., <type>: {...}}``).
AttestationBody = dict[str, Any]
#: One certificate of an X.509 attestation: ``certificate`` and/or DPS's ``info``.
CertificateSlot = dict[str, Any]


def tpm_attestation(endorsement_key: str, storage_root_key: str | None = None) -> AttestationBody:
    """Return a TPM attestation; the storage root key is optional."""
    tpm: dict[str, Any] = {"endorsementKey": endorsement_key}
    if storage_root_key:
        tpm["storageRootKey"] = storage_root_key
    return {"type": "tpm", "tpm": tpm}


def symmetric_key_attestation(
    primary_key: str | None = None, secondary_key: str | None = None
) -> AttestationBody:
    """Return a symmetric-key attestation; DPS generates (or keeps) the keys left blank."""
    keys: dict[str, Any] = {}
    if primary_key:
        keys["primaryKey"] = primary_key
    if secondary_key:
        keys["secondaryKey"] = secondary_key
    return {"type": "symmetricKey", "symmetricKey": keys}


def ca_reference_attestation(primary: str, secondary: str | None = None) -> AttestationBody:
    """Return an X.509 attestation by the names of CA certificates uploaded to DPS."""
    refs: dict[str, Any] = {"primary": primary}
    if secondary:
        refs["secondary"] = secondary
    return {"type": "x509", "x509": {"caReferences": refs}}


def certificate_slot(
    certificate: str | None = None, *, sha256_thumbprint: str | None = None
) -> CertificateSlot:
    """Return one certificate entry: the text to send, and the thumbprint the portal compares."""
    slot: CertificateSlot = {}
    if certificate is not None:
        slot["certificate"] = certificate
    if sha256_thumbprint:
        slot["info"] = {"sha256Thumbprint": sha256_thumbprint}
    return slot


def certificate_attestation(
    primary: CertificateSlot,
    secondary: CertificateSlot | None = None,
    *,
    signing: bool = False,
) -> AttestationBody:
    """Return an X.509 attestation by certificates.

    ``signing``: the root or intermediate CA certificates of a group; otherwise the device's
    own client certificates (an individual enrollment).
    """
    certs: dict[str, Any] = {"primary": primary}
    if secondary:
        certs["secondary"] = secondary
    kind = "signingCertificates" if signing else "clientCertificates"
    return {"type": "x509", "x509": {kind: certs}}
