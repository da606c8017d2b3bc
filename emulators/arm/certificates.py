"""The DPS resource provider's CA certificates (``.../provisioningServices/{name}/certificates``).

What the emulator does, as the resource provider's REST API describes it (Dps Certificate -
Get, List, Create Or Update, Delete, Generate Verification Code, Verify Certificate;
``azure-mgmt-iothubprovisioningservices`` 2.1.0 sends exactly these requests):

* ``properties.certificate`` is the base-64 of a ``.cer`` (DER) or ``.pem`` file; a PEM text
  sent as is is accepted too.
* ``expiry``, ``created`` and ``updated`` are RFC 7231 dates; ``thumbprint`` is the SHA-1 hex.
* Every change makes a new ETag; update, delete, generateVerificationCode and verify need the
  current one in ``If-Match`` (``*`` matches any).
* Proof of possession is checked for real: the verification certificate's subject common name
  is the last code generated, and its signature verifies with the CA's public key.

Errors of the provider itself use its ``ErrorDetails`` body (``code``, ``httpStatusCode``,
``message``, ``details``). The numeric codes are the emulator's choice, modelled on IoT Hub's;
they were not checked against the real service. A leaf or expired certificate is accepted on
upload, as the portal cannot confirm that the real service refuses it (the portal refuses).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

CERT_TYPE = "Microsoft.Devices/provisioningServices/certificates"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
MAX_CERTIFICATES = 25


class ProviderError(Exception):
    """An error the DPS resource provider answers in its own ``ErrorDetails`` shape."""

    def __init__(self, status: int, code: int, http_status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.http_status = http_status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "httpStatusCode": self.http_status,
            "message": self.message,
            "details": None,
        }


def bad_request(code: int, message: str) -> ProviderError:
    return ProviderError(400, code, "BadRequest", message)


def load_certificate(raw: str) -> x509.Certificate:
    """Parse what a client sends: base-64 of a PEM or DER file, or the PEM text itself."""
    text = (raw or "").strip()
    if not text:
        raise bad_request(400004, "The certificate is missing.")
    data: bytes
    if text.startswith("-----BEGIN"):
        data = text.encode()
    else:
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise bad_request(400004, "The certificate is not valid base-64.") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data.lstrip())
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise bad_request(
            400004, "The certificate could not be parsed as an X.509 certificate (PEM or DER)."
        ) from None


def rfc7231(value: dt.datetime) -> str:
    return format_datetime(value.astimezone(dt.UTC).replace(microsecond=0), usegmt=True)


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def proof_of_possession(ca: x509.Certificate, proof: x509.Certificate, code: str) -> None:
    """Raise unless ``proof`` names ``code`` as its subject CN and ``ca``'s key signed it."""
    if common_name(proof).strip().upper() != code.upper():
        raise bad_request(
            400027,
            "The verification certificate's subject common name is not the verification code "
            "generated for this certificate.",
        )
    try:
        proof.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise bad_request(
            400027,
            "The verification certificate was not signed by the private key of the CA "
            "certificate being verified.",
        ) from None


@dataclass
class StoredCertificate:
    """One uploaded certificate of one provisioning service."""

    name: str
    pem: str
    is_verified: bool
    created: str  # ISO 8601
    updated: str
    etag: str
    verification_code: str = ""

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())

    def properties(self) -> dict[str, Any]:
        cert = self.cert
        return {
            "subject": cert.subject.rfc4514_string(),
            "expiry": rfc7231(cert.not_valid_after_utc),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
            "isVerified": self.is_verified,
            "certificate": base64.b64encode(self.pem.encode()).decode(),
            "created": rfc7231(dt.datetime.fromisoformat(self.created)),
            "updated": rfc7231(dt.datetime.fromisoformat(self.updated)),
        }

    def resource(self, dps_id: str) -> dict[str, Any]:
        return {
            "id": f"{dps_id}/certificates/{self.name}",
            "name": self.name,
            "type": CERT_TYPE,
            "etag": self.etag,
            "properties": self.properties(),
        }


def _new_etag() -> str:
    # The real provider's ETags look like "AAAAAAAAAAE=": base-64 of 8 bytes, no quotes.
    return base64.b64encode(secrets.token_bytes(8)).decode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def etag_matches(given: str | None, current: str) -> bool:
    if given is None:
        return False
    wanted = [t.strip().removeprefix("W/").strip('"') for t in given.split(",")]
    return "*" in wanted or current.strip('"') in wanted


class CertificateStore:
    """Certificates per provisioning service, kept in ``arm-certificates.json`` of the state dir."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / "arm-certificates.json" if state_dir else None
        self.lock = threading.Lock()
        self.data: dict[str, dict[str, StoredCertificate]] = {}
        if self.path and self.path.exists():
            raw = json.loads(self.path.read_text())
            self.data = {
                dps: {k: StoredCertificate(**v) for k, v in certs.items()}
                for dps, certs in raw.items()
            }

    def _save(self) -> None:
        if not self.path:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {d: {k: asdict(v) for k, v in c.items()} for d, c in self.data.items()}, indent=1
            )
        )
        os.replace(tmp, self.path)

    def _certs(self, dps_id: str) -> dict[str, StoredCertificate]:
        return self.data.setdefault(dps_id.lower(), {})

    def all(self, dps_id: str) -> list[StoredCertificate]:
        with self.lock:
            return sorted(self._certs(dps_id).values(), key=lambda c: c.name.lower())

    def get(self, dps_id: str, name: str) -> StoredCertificate:
        with self.lock:
            found = self._certs(dps_id).get(name.lower())
        if found is None:
            raise _not_found(name)
        return found

    def verified(self, dps_id: str) -> list[StoredCertificate]:
        """Return the verified certificates (what an X.509 CA reference may name)."""
        return [c for c in self.all(dps_id) if c.is_verified]

    def put(
        self, dps_id: str, name: str, body: Any, if_match: str | None
    ) -> tuple[StoredCertificate, bool]:
        """Create or update; return the certificate and whether it was created."""
        if not NAME_RE.match(name):
            raise bad_request(
                400004,
                "The certificate name may use letters, digits, '.', '_' and '-' (1 to 256).",
            )
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            raise bad_request(400004, "The request body must have 'properties'.")
        raw = props.get("certificate")
        if not isinstance(raw, str):
            raise bad_request(400004, "'properties.certificate' must be a base-64 string.")
        cert = load_certificate(raw)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        is_verified = props.get("isVerified") is True
        with self.lock:
            certs = self._certs(dps_id)
            existing = certs.get(name.lower())
            if existing is not None:
                if not etag_matches(if_match, existing.etag):
                    raise _precondition(name, if_match)
                existing.pem = pem
                existing.is_verified = is_verified
                existing.verification_code = ""
                existing.updated = _now()
                existing.etag = _new_etag()
                self._save()
                return existing, False
            if if_match and if_match.strip() != "*":
                raise _precondition(name, if_match)
            if len(certs) >= MAX_CERTIFICATES:
                raise bad_request(
                    400026, f"A provisioning service holds at most {MAX_CERTIFICATES} certificates."
                )
            now = _now()
            stored = StoredCertificate(name, pem, is_verified, now, now, _new_etag())
            certs[name.lower()] = stored
            self._save()
            return stored, True

    def _matching(self, dps_id: str, name: str, if_match: str | None) -> StoredCertificate:
        """Return the certificate if ``if_match`` names its ETag (call with the lock held)."""
        existing = self._certs(dps_id).get(name.lower())
        if existing is None:
            raise _not_found(name)
        if not etag_matches(if_match, existing.etag):
            raise _precondition(name, if_match)
        return existing

    def delete(self, dps_id: str, name: str, if_match: str | None) -> None:
        with self.lock:
            self._matching(dps_id, name, if_match)
            del self._certs(dps_id)[name.lower()]
            self._save()

    def generate_code(self, dps_id: str, name: str, if_match: str | None) -> StoredCertificate:
        with self.lock:
            existing = self._matching(dps_id, name, if_match)
            existing.verification_code = secrets.token_hex(24).upper()
            existing.updated = _now()
            existing.etag = _new_etag()
            self._save()
            return existing

    def verify(self, dps_id: str, name: str, if_match: str | None, body: Any) -> StoredCertificate:
        raw = body.get("certificate") if isinstance(body, dict) else None
        if not isinstance(raw, str):
            raise bad_request(400004, "The request body must have 'certificate'.")
        proof = load_certificate(raw)
        with self.lock:
            existing = self._matching(dps_id, name, if_match)
            if not existing.verification_code:
                raise bad_request(
                    400027,
                    "No verification code was generated for this certificate; generate one first.",
                )
            proof_of_possession(existing.cert, proof, existing.verification_code)
            existing.is_verified = True
            existing.verification_code = ""
            existing.updated = _now()
            existing.etag = _new_etag()
            self._save()
            return existing


def _not_found(name: str) -> ProviderError:
    return ProviderError(
        404, 404004, "NotFound", f"The certificate '{name[:256]}' could not be found."
    )


def _precondition(name: str, given: str | None) -> ProviderError:
    if not given:
        return ProviderError(
            412,
            412002,
            "PreconditionFailed",
            f"The operation on certificate '{name[:256]}' needs its current ETag in If-Match.",
        )
    return ProviderError(
        412,
        412002,
        "PreconditionFailed",
        f"The ETag in If-Match does not match the current ETag of certificate '{name[:256]}'; "
        "it was changed since it was read.",
    )
