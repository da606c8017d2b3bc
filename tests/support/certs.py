"""Make X.509 certificates and keys for tests: one factory instead of a copy per test module.

Keys are EC P-256 unless a test needs RSA (MSAL and RS256 client assertions do). A certificate
is valid from five minutes ago (clock skew between the test and the emulators) for 30 days
unless the test names its own window.

    root = ca("Fleet Root CA")
    device = leaf("device-001", issuer=root)
    pem(device.cert), der_b64(device.cert), key_pem(device.key)
    proof = verification(root, code)  # proof of possession of a CA's key for DPS
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

PrivateKey = CertificateIssuerPrivateKeyTypes

#: How far back a fresh certificate's validity starts, so a slightly slower clock accepts it.
SKEW = timedelta(minutes=5)
DEFAULT_DAYS = 30

#: The key usages of a CA certificate: it signs certificates and CRLs (and, as many do, data).
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (a CA signs leaves with ``key``)."""

    key: PrivateKey
    cert: x509.Certificate


def ec_key() -> ec.EllipticCurvePrivateKey:
    """Return a new EC P-256 private key (fast: the default for certificates)."""
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(size: int = 2048) -> rsa.RSAPrivateKey:
    """Return a new RSA private key of ``size`` bits."""
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def name(cn: str, *, organization: str | None = None, country: str | None = None) -> x509.Name:
    """Return a distinguished name: C, O, CN in that order, each only when given."""
    attributes = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def validity(days: int = DEFAULT_DAYS, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Return (not before, not after) of a certificate issued ``now`` for ``days`` days."""
    start = now or datetime.now(UTC)
    return start - SKEW, start + timedelta(days=days)


def certificate(
    subject: str | x509.Name,
    *,
    key: PrivateKey | None = None,
    issuer: Issued | None = None,
    ca: bool = False,
    days: int = DEFAULT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    expired: bool = False,
) -> Issued:
    """Return a certificate for ``key`` (a new EC key when None), signed by ``issuer``.

    Without ``issuer`` the certificate is self-signed. ``not_before``/``not_after`` override
    the window of ``days``; ``expired`` makes one that ran out yesterday. A CA certificate
    also carries the key usages of a CA (certificate and CRL signing), as real ones do.
    """
    key = key or ec_key()
    subject_name = name(subject) if isinstance(subject, str) else subject
    start, end = expired_window() if expired else validity(days)
    signer_key, signer_name = (issuer.key, issuer.cert.subject) if issuer else (key, subject_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before or start)
        .not_valid_after(not_after or end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(CA_KEY_USAGE, critical=True)
    return Issued(key, builder.sign(signer_key, hashes.SHA256()))


def expired_window() -> tuple[datetime, datetime]:
    """Return (not before, not after) of a certificate valid from ten days ago until yesterday."""
    now = datetime.now(UTC)
    return now - timedelta(days=10), now - timedelta(days=1)


def ca(cn: str, *, days: int = DEFAULT_DAYS, expired: bool = False) -> Issued:
    """Return a self-signed CA certificate (basic constraints ``ca=True``, CA key usages)."""
    return certificate(cn, ca=True, days=days, expired=expired)


def leaf(subject: str | x509.Name, *, issuer: Issued, days: int = DEFAULT_DAYS) -> Issued:
    """Return an end-entity certificate signed by the CA ``issuer``."""
    return certificate(subject, issuer=issuer, days=days)


def verification(issuer: Issued, code: str) -> Issued:
    """Return DPS's proof of possession: a certificate with subject CN=``code`` signed by ``issuer``."""
    return leaf(code, issuer=issuer)


def self_signed_pem(cn: str, *, ca: bool = False, days: int = DEFAULT_DAYS) -> str:
    """Return a fresh self-signed certificate with subject CN=``cn`` as PEM text."""
    return pem(certificate(cn, ca=ca, days=days).cert)


def pem(cert: x509.Certificate) -> str:
    """Return the certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem_b64(cert: x509.Certificate) -> str:
    """Return the PEM text in base64 on one line (the ARM certificate body's usual form)."""
    return base64.b64encode(pem(cert).encode()).decode()


def der(cert: x509.Certificate) -> bytes:
    """Return the certificate's DER bytes."""
    return cert.public_bytes(serialization.Encoding.DER)


def der_b64(cert: x509.Certificate) -> str:
    """Return the certificate's DER bytes in base64 on one line (as DPS and CSV cells hold it)."""
    return base64.b64encode(der(cert)).decode()


def key_pem(key: PrivateKey) -> str:
    """Return the private key as unencrypted PKCS#8 PEM text."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
