"""What the portal accepts as a CA certificate upload, before anything reaches Azure."""

from __future__ import annotations

import pytest

from controlplane.pem import MAX_BYTES, CertificateInputError, load, load_ca
from tests.support import certs


def test_pem_and_der_give_the_same_certificate() -> None:
    ca = certs.ca("Unit CA")
    from_pem, from_der = load_ca(certs.pem(ca.cert).encode()), load_ca(certs.der(ca.cert))
    assert from_pem.thumbprint == from_der.thumbprint
    assert len(from_pem.thumbprint) == 40
    assert from_pem.subject == "CN=Unit CA"
    assert from_pem.base64_pem


def test_pem_with_leading_text_is_read() -> None:
    ca = certs.ca("Bag Attributes CA")
    assert load(
        b"Bag Attributes\n  friendlyName: ca\n" + certs.pem(ca.cert).encode()
    ).subject == "CN=Unit CA".replace("Unit", "Bag Attributes")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"x" * (MAX_BYTES + 1), "larger than 64 KiB"),
        (b"\x30\x03\x02\x01\x00", "not an X.509 certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", "private key"),
    ],
)
def test_not_a_certificate(data: bytes, message: str) -> None:
    with pytest.raises(CertificateInputError, match=message):
        load(data)


def test_leaf_refused() -> None:
    with pytest.raises(CertificateInputError, match="not a CA certificate"):
        load_ca(certs.pem(certs.certificate("device-1").cert).encode())


def test_expired_ca_refused() -> None:
    with pytest.raises(CertificateInputError, match="expired on"):
        load_ca(certs.pem(certs.ca("Old", expired=True).cert).encode())


def test_leaf_accepted_as_verification_certificate() -> None:
    # The proof of possession is a leaf: only the upload of a CA requires CA:TRUE.
    assert load(certs.pem(certs.certificate("ABCDEF").cert).encode()).subject == "CN=ABCDEF"
