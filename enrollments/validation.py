"""Field validators for enrollments, with messages in words (issue 5: errors before sending).

Each validator takes what a form or CSV cell holds, returns the cleaned value and raises
``django.core.exceptions.ValidationError`` with a sentence that says what is wrong and what is
expected. None of them needs settings or a database, so CSV import and forms share them.
The rules are those of the DPS service API 2021-10-01 (record fields, attestation, keys)
and the IoT Hub limits it applies (device ids, twin sizes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.core.exceptions import ValidationError

from enrollments.dps.client import API_VERSION
from enrollments.dps.types import (
    ALLOCATION_POLICIES,
    ATTESTATION_TYPES,
    GROUP_ATTESTATION_TYPES,
    CustomAllocationDefinition,
    ReprovisionPolicy,
)

MIN_WEBHOOK_API_VERSION = "2018-09-01-preview"
MAX_ID_LENGTH = 128
MAX_TWIN_DEPTH = 10
MAX_TWIN_BYTES = 32 * 1024
MAX_TWIN_KEY_BYTES = 1024
SYMMETRIC_KEY_BYTES = (16, 64)
MIN_ENDORSEMENT_KEY_BYTES = 32

_ID_CHARS = re.compile(r"[A-Za-z0-9._:-]")
_DEVICE_ID_CHARS = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']")
_HUB_HOST = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"
)
_API_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview)?$")


def _fail(message: str, code: str) -> ValidationError:
    return ValidationError(message, code=code)


#
# Identifiers
#


def _validate_id(value: str | None, label: str, code: str) -> str:
    value = (value or "").strip()
    if not value:
        raise _fail(f"Enter {label}.", f"{code}_required")
    if len(value) > MAX_ID_LENGTH:
        raise _fail(
            f"{label[0].upper()}{label[1:]} has at most {MAX_ID_LENGTH} characters "
            f"(this one has {len(value)}).",
            f"{code}_too_long",
        )
    bad = sorted({c for c in value if not _ID_CHARS.fullmatch(c)})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise _fail(
            f"{label[0].upper()}{label[1:]} may contain only letters, digits and - . _ : "
            f"(not {shown}).",
            f"{code}_characters",
        )
    if not value[0].isalnum():
        raise _fail(
            f"{label[0].upper()}{label[1:]} must start with a letter or a digit.",
            f"{code}_start",
        )
    if not (value[-1].isalnum() or value[-1] == "-"):
        raise _fail(
            f"{label[0].upper()}{label[1:]} must end with a letter, a digit or -.",
            f"{code}_end",
        )
    return value


def validate_registration_id(value: str | None) -> str:
    """Return a valid registration ID (up to 128 letters, digits, - . _ :; ends alphanumeric or -)."""
    return _validate_id(value, "a registration ID", "registration_id")


def validate_group_id(value: str | None) -> str:
    """Return a valid enrollment group ID (same alphabet as registration IDs)."""
    return _validate_id(value, "an enrollment group ID", "group_id")


def validate_device_id(value: str | None) -> str | None:
    """Return a valid IoT Hub device ID, or ``None`` when empty (DPS uses the registration ID)."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise _fail(
            f"A device ID has at most {MAX_ID_LENGTH} characters (this one has {len(value)}).",
            "device_id_too_long",
        )
    bad = sorted({c for c in value if not _DEVICE_ID_CHARS.fullmatch(c)})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise _fail(
            "A device ID may contain only letters, digits and - . % _ * ? ! ( ) , : = @ $ ' "
            f"(not {shown}).",
            "device_id_characters",
        )
    return value


#
# JSON: initial twin and optional device information
#


def parse_twin_json(text: str | None, label: str = "Tags") -> dict[str, Any] | None:
    """Return the JSON object in ``text`` (``None`` when blank), checked against twin rules.

    Twin keys may not contain ``.``, ``$``, spaces or control characters and have at most
    1 KB; objects nest at most 10 deep; the whole document has at most 32 KB (IoT Hub limits).
    """
    if text is None or not str(text).strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"{label}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
            "json_syntax",
        ) from None
    return validate_twin_object(data, label)


def validate_twin_object(data: Any, label: str = "Tags") -> dict[str, Any]:
    """Check an already-parsed twin collection; see :func:`parse_twin_json`."""
    if not isinstance(data, dict):
        raise _fail(
            f'{label} must be a JSON object such as {{"building": "43"}}.', "json_not_object"
        )
    size = len(json.dumps(data, separators=(",", ":")).encode("utf-8"))
    if size > MAX_TWIN_BYTES:
        raise _fail(
            f"{label} are {size} bytes; the limit is {MAX_TWIN_BYTES} bytes.", "json_too_large"
        )
    _check_twin_keys(data, label, depth=1, path="")
    return data


def _check_twin_keys(node: Any, label: str, depth: int, path: str) -> None:
    if isinstance(node, list):
        for item in node:
            _check_twin_keys(item, label, depth, path)
        return
    if not isinstance(node, dict):
        return
    if depth > MAX_TWIN_DEPTH:
        raise _fail(
            f"{label} nest deeper than {MAX_TWIN_DEPTH} levels (at {path}).", "json_too_deep"
        )
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if not key:
            raise _fail(f"{label}: a key is empty.", "json_key")
        if len(key.encode("utf-8")) > MAX_TWIN_KEY_BYTES:
            raise _fail(f"{label}: the key {where[:40]!r}… is longer than 1 KB.", "json_key")
        bad = [c for c in key if c in ".$ " or ord(c) < 32 or 127 <= ord(c) < 160]
        if bad:
            raise _fail(
                f"{label}: the key {key!r} may not contain '.', '$', spaces or control characters.",
                "json_key",
            )
        _check_twin_keys(value, label, depth + 1, where)


#
# Certificates
#


@dataclass(frozen=True)
class CertificateInfo:
    """What the portal shows of a certificate: who, by whom, fingerprints and validity."""

    subject: str
    issuer: str
    sha1_thumbprint: str
    sha256_thumbprint: str
    not_before: datetime
    not_after: datetime
    serial_number: str
    version: int
    is_ca: bool
    der: bytes

    def is_expired(self, now: datetime | None = None) -> bool:
        """Return whether the certificate is past its end date."""
        return (now or datetime.now(UTC)) > self.not_after

    def is_not_yet_valid(self, now: datetime | None = None) -> bool:
        """Return whether the certificate's start date is still ahead."""
        return (now or datetime.now(UTC)) < self.not_before

    @property
    def common_name(self) -> str | None:
        """Return the subject CN (the registration ID of an X.509 individual enrollment)."""
        cert = x509.load_der_x509_certificate(self.der)
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(names[0].value) if names else None

    def pem(self) -> str:
        """Return the certificate as PEM text, the form sent to DPS."""
        cert = x509.load_der_x509_certificate(self.der)
        return cert.public_bytes(Encoding.PEM).decode("ascii")


_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL
)


def _name(name: x509.Name) -> str:
    # Most specific first, ", "-separated, as DPS and Windows show it (CN=…, O=…, C=…).
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def parse_certificate(text: str | bytes | None) -> CertificateInfo:
    """Parse one X.509 certificate given as PEM or as base64 of its DER bytes."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = (text or "").strip()
    if not text:
        raise _fail("Paste a certificate (PEM or base64).", "certificate_required")
    if "PRIVATE KEY" in text:
        raise _fail(
            "This is a private key. Paste the certificate only, and keep the key secret.",
            "certificate_private_key",
        )
    blocks = _PEM_BLOCK.findall(text)
    if len(blocks) > 1:
        raise _fail(f"Paste one certificate, not a chain of {len(blocks)}.", "certificate_chain")
    body = blocks[0] if blocks else text
    garbage = _fail(
        "This is not an X.509 certificate in PEM or base64 (DER) form.", "certificate_invalid"
    )
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise garbage from None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    return CertificateInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        sha1_thumbprint=hashlib.sha1(der, usedforsecurity=False).hexdigest().upper(),
        sha256_thumbprint=hashlib.sha256(der).hexdigest().upper(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial_number=format(cert.serial_number, "X"),
        version=cert.version.value + 1,
        is_ca=is_ca,
        der=der,
    )


def validate_certificate(
    text: str | bytes | None, *, now: datetime | None = None
) -> CertificateInfo:
    """Parse a certificate and refuse one that has expired or is not valid yet."""
    info = parse_certificate(text)
    if info.is_expired(now):
        raise _fail(
            f"The certificate expired on {info.not_after:%Y-%m-%d %H:%M} UTC.",
            "certificate_expired",
        )
    if info.is_not_yet_valid(now):
        raise _fail(
            f"The certificate is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC.",
            "certificate_not_yet_valid",
        )
    return info


def validate_ca_reference(value: str | None) -> str:
    """Return the name of a CA certificate uploaded to DPS."""
    value = (value or "").strip()
    if not value:
        raise _fail("Enter the name of a CA certificate uploaded to DPS.", "ca_reference_required")
    if len(value) > 256 or any(ord(c) < 32 for c in value):
        raise _fail("A CA certificate name has at most 256 printable characters.", "ca_reference")
    return value


#
# Keys
#


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_endorsement_key(value: str | None, label: str = "The endorsement key") -> str:
    """Return a TPM endorsement key (public part) given as base64."""
    value = "".join((value or "").split())
    if not value:
        raise _fail(f"Enter {label[0].lower()}{label[1:]}.", "tpm_key_required")
    raw = _b64(value)
    if raw is None:
        raise _fail(
            f"{label} must be base64 (letters, digits, + and /, with = padding).", "tpm_key_base64"
        )
    if len(raw) < MIN_ENDORSEMENT_KEY_BYTES:
        raise _fail(
            f"{label} is {len(raw)} bytes: too short for a TPM public key.", "tpm_key_short"
        )
    return value


def validate_storage_root_key(value: str | None) -> str | None:
    """Return an optional TPM storage root key (base64), ``None`` when blank."""
    if not (value or "").strip():
        return None
    return validate_endorsement_key(value, "The storage root key")


def validate_symmetric_key(value: str | None, label: str = "The primary key") -> str | None:
    """Return a base64 key of 16 to 64 bytes, or ``None`` when blank (DPS generates one).

    The message never repeats the key.
    """
    value = "".join((value or "").split())
    if not value:
        return None
    raw = _b64(value)
    if raw is None:
        raise _fail(f"{label} must be base64.", "symmetric_key_base64")
    low, high = SYMMETRIC_KEY_BYTES
    if not low <= len(raw) <= high:
        raise _fail(
            f"{label} must decode to {low} to {high} bytes (this one is {len(raw)} bytes).",
            "symmetric_key_length",
        )
    return value


#
# Hubs and allocation
#


def validate_iot_hub_host_name(value: str | None) -> str:
    """Return an IoT hub host name such as ``myhub.azure-devices.net``, lower-cased."""
    value = (value or "").strip().lower()
    if not value:
        raise _fail("Enter an IoT hub host name.", "hub_required")
    if "://" in value or "/" in value:
        raise _fail(
            "Enter the host name only, without https:// or a path (e.g. myhub.azure-devices.net).",
            "hub_not_host",
        )
    if not _HUB_HOST.fullmatch(value) or len(value) > 253:
        raise _fail(
            f"{value!r} is not an IoT hub host name such as myhub.azure-devices.net.", "hub_invalid"
        )
    return value


def validate_iot_hubs(values: Iterable[str], *, linked: Sequence[str] | None = None) -> list[str]:
    """Return the hub host names, each valid, without duplicates and linked to the DPS if known."""
    hubs: list[str] = []
    for raw in values:
        if not (raw or "").strip():
            continue
        hub = validate_iot_hub_host_name(raw)
        if hub in hubs:
            raise _fail(f"{hub} is listed twice.", "hub_duplicate")
        if linked is not None and hub not in {h.lower() for h in linked}:
            raise _fail(
                f"{hub} is not linked to this DPS instance (linked: {', '.join(linked) or 'none'}).",
                "hub_not_linked",
            )
        hubs.append(hub)
    return hubs


def validate_webhook_url(value: str | None) -> str:
    """Return a custom-allocation webhook URL; it must be https."""
    value = (value or "").strip()
    if not value:
        raise _fail("A custom allocation policy needs a webhook URL.", "webhook_required")
    if any(c.isspace() for c in value):
        raise _fail("The webhook URL may not contain spaces.", "webhook_invalid")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _fail("The webhook URL is not a valid URL.", "webhook_invalid") from None
    if parts.scheme.lower() != "https":
        raise _fail("The webhook URL must start with https://.", "webhook_not_https")
    if not parts.hostname:
        raise _fail("The webhook URL has no host name.", "webhook_invalid")
    if parts.username or parts.password:
        raise _fail(
            "Put no user name or password in the webhook URL; use a function key in the query.",
            "webhook_credentials",
        )
    return value


def validate_api_version(value: str | None, *, minimum: str = MIN_WEBHOOK_API_VERSION) -> str:
    """Return a DPS api-version (``YYYY-MM-DD`` or ``YYYY-MM-DD-preview``) not older than ``minimum``."""
    value = (value or "").strip()
    match = _API_VERSION.fullmatch(value)
    if not match:
        raise _fail(
            "The API version looks like 2021-10-01 (optionally ending in -preview).",
            "api_version_format",
        )
    try:
        when = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise _fail(f"{value} is not a real date.", "api_version_format") from None
    low = _API_VERSION.fullmatch(minimum)
    assert low is not None
    floor = (date(int(low[1]), int(low[2]), int(low[3])), low[4] is None)
    if (when, match[4] is None) < floor:
        raise _fail(f"The API version must be {minimum} or later.", "api_version_old")
    return value


def validate_allocation(
    policy: str | None,
    *,
    iot_hubs: Sequence[str] = (),
    webhook_url: str | None = None,
    api_version: str | None = None,
) -> tuple[str | None, CustomAllocationDefinition | None]:
    """Return the allocation policy and, for ``custom``, its webhook definition.

    Blank means the DPS instance's own policy. ``static`` needs exactly one hub; a webhook is
    accepted only with ``custom``.
    """
    policy = (policy or "").strip()
    if not policy:
        if (webhook_url or "").strip():
            raise _fail(
                "A webhook URL is used only with the custom allocation policy.", "webhook_unused"
            )
        return None, None
    by_lower = {p.lower(): p for p in ALLOCATION_POLICIES}
    if policy.lower() not in by_lower:
        raise _fail(
            "Choose an allocation policy: hashed, geoLatency, static or custom.", "allocation"
        )
    policy = by_lower[policy.lower()]
    if policy == "static" and len(iot_hubs) != 1:
        raise _fail(
            f"A static allocation policy needs exactly one IoT hub ({len(iot_hubs)} selected).",
            "allocation_static",
        )
    if policy != "custom":
        if (webhook_url or "").strip():
            raise _fail(
                "A webhook URL is used only with the custom allocation policy.", "webhook_unused"
            )
        return policy, None
    url = validate_webhook_url(webhook_url)
    if not (api_version or "").strip():
        raise _fail(
            "A custom allocation policy needs the API version of its webhook (e.g. 2021-10-01).",
            "api_version_required",
        )
    return policy, CustomAllocationDefinition(
        webhook_url=url, api_version=validate_api_version(api_version)
    )


AllocationInput = Literal["policy", "webhook_url", "api_version"]


def allocation_error_input(exc: ValidationError) -> AllocationInput:
    """Return which input of :func:`validate_allocation` an error of it is about, by its code.

    Forms and the CSV import put the error next to that field or column.
    """
    code = exc.code or ""
    if code.startswith("webhook"):
        return "webhook_url"
    if code.startswith("api_version"):
        return "api_version"
    return "policy"


#
# Choices
#

REPROVISION_CHOICES: dict[str, tuple[bool, bool]] = {
    # choice: (updateHubAssignment, migrateDeviceData)
    "reprovision_and_migrate": (True, True),
    "reprovision_and_reset": (True, False),
    "never": (False, False),
}


def validate_reprovision_policy(choice: str | None) -> ReprovisionPolicy | None:
    """Return the reprovision policy for a named choice, or ``None`` when blank."""
    choice = (choice or "").strip()
    if not choice:
        return None
    if choice not in REPROVISION_CHOICES:
        raise _fail(
            "Choose what happens when a device provisions again: reprovision_and_migrate, "
            "reprovision_and_reset or never.",
            "reprovision",
        )
    update, migrate = REPROVISION_CHOICES[choice]
    return ReprovisionPolicy(update_hub_assignment=update, migrate_device_data=migrate)


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


def validate_iot_edge(value: bool | str | None) -> bool:
    """Return the IoT Edge capability from a checkbox, a CSV cell or a bool."""
    if isinstance(value, bool):
        return value
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _fail("IoT Edge must be true or false.", "iot_edge")


def validate_provisioning_status(value: str | None) -> str:
    """Return ``enabled`` or ``disabled``; blank means ``enabled`` (the DPS default)."""
    text = (value or "").strip().lower()
    if not text:
        return "enabled"
    if text not in ("enabled", "disabled"):
        raise _fail("Provisioning status must be enabled or disabled.", "provisioning_status")
    return text


def validate_attestation_type(value: str | None, *, group: bool = False) -> str:
    """Return the attestation type; groups allow only X.509 and symmetric key."""
    text = (value or "").strip()
    by_lower = {t.lower(): t for t in ATTESTATION_TYPES if t != "none"}
    if text.lower() not in by_lower:
        raise _fail("Choose an attestation: tpm, x509 or symmetricKey.", "attestation")
    text = by_lower[text.lower()]
    if group and text not in GROUP_ATTESTATION_TYPES:
        raise _fail(
            "Enrollment groups support X.509 and symmetric key attestation, not TPM.",
            "attestation_group_tpm",
        )
    return text


def validate_service_api_version(value: str | None) -> str:
    """Return the DPS service api-version the client speaks; anything else is refused."""
    if (value or "").strip() != API_VERSION:
        raise _fail(f"Only DPS service API version {API_VERSION} is supported.", "api_version")
    return API_VERSION
