"""Read an uploaded certificate (PEM or CER) and decide whether the portal accepts it."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

MAX_BYTES = 64 * 1024


class CertificateInputError(ValueError):
    """The file is not a certificate the portal accepts; the message says why, for the user."""


@dataclass(frozen=True)
class UploadedCertificate:
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def base64_pem(self) -> str:
        """Return what the resource provider expects: base-64 of the PEM file."""
        return base64.b64encode(self.pem.encode()).decode()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def thumbprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - DPS shows SHA-1


def load(data: bytes) -> UploadedCertificate:
    """Parse a PEM or DER (``.cer``) certificate; raise :class:`CertificateInputError`."""
    if not data:
        raise CertificateInputError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise CertificateInputError("The file is larger than 64 KiB; a certificate is not.")
    if b"-----BEGIN" in data and b"PRIVATE KEY" in data:
        raise CertificateInputError(
            "The file holds a private key. Upload the certificate only; the key never "
            "leaves your machine."
        )
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN") :])
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError:
        raise CertificateInputError(
            "The file is not an X.509 certificate in PEM or DER (.cer) form."
        ) from None
    return UploadedCertificate(cert)


def check_ca(uploaded: UploadedCertificate, now: dt.datetime | None = None) -> None:
    """Refuse what cannot sign device certificates: a leaf, an expired or future certificate."""
    cert = uploaded.cert
    now = now or dt.datetime.now(dt.UTC)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertificateInputError(
            f"{uploaded.subject or 'This certificate'} is not a CA certificate (its basic "
            "constraints do not say CA:TRUE), so it cannot sign device certificates. Upload the "
            "root or intermediate CA that issues your devices' certificates."
        )
    if cert.not_valid_after_utc <= now:
        raise CertificateInputError(
            f"The certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; devices "
            "whose certificates chain to it could not register."
        )
    if cert.not_valid_before_utc > now:
        raise CertificateInputError(
            f"The certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
        )


def load_ca(data: bytes) -> UploadedCertificate:
    """Parse an upload and require a valid CA certificate."""
    uploaded = load(data)
    check_ca(uploaded)
    return uploaded
