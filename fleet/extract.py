"""Turn DPS documents (JSON as DPS sends it) into index rows, field by field, never a secret.

Only named, non-secret fields are copied: ids, settings, twin tags and desired properties,
ETag, times and what DPS parsed from certificates (``info``). Attestation secrets (symmetric
keys, TPM endorsement and storage keys, certificate bodies) have no column and are never read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# The values of fleet.models.RecordKind; kept here so this module needs no Django setup.
GROUP = "group"

# Fields of IndexedRecord a pass writes (the order of bulk_create's update_fields).
RECORD_FIELDS = (
    "record_id",
    "device_id",
    "attestation",
    "x509_kind",
    "status",
    "iot_hub_host_name",
    "iot_hubs",
    "allocation_policy",
    "reprovision_update_hub",
    "reprovision_migrate_data",
    "iot_edge",
    "tags",
    "desired",
    "etag",
    "created",
    "updated",
    "cert_subject",
    "cert_issuer",
    "primary_thumbprint",
    "secondary_thumbprint",
    "primary_not_after",
    "secondary_not_after",
    "cert_not_after",
)
REGISTRATION_FIELDS = (
    "registration_id",
    "group_key",
    "device_id",
    "status",
    "substatus",
    "assigned_hub",
    "error_code",
    "error_message",
    "etag",
    "created",
    "updated",
)


def dps_time(value: Any) -> datetime | None:
    """Parse a DPS timestamp (``2026-12-03T07:09:03.1234567Z``) into an aware datetime."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:  # the common case, in C: any number of fractional digits, "Z" or an offset
        parsed = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    try:
        base = datetime.fromisoformat(value[:19])
    except ValueError:
        return None
    micro = 0
    if len(value) > 20 and value[19] == ".":
        digits = value[20:].rstrip("Zz")[:6]
        if digits.isdigit():
            micro = int(digits.ljust(6, "0"))
    return base.replace(microsecond=micro, tzinfo=UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _certificates(x509: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for name in ("clientCertificates", "signingCertificates"):
        if isinstance(x509.get(name), dict):
            return name.removesuffix("Certificates"), x509[name]
    if isinstance(x509.get("caReferences"), dict):
        return "caReferences", {}
    return "", {}


def _cert_values(attestation: dict[str, Any]) -> tuple[Any, ...]:
    """Return (x509 kind, and the certificate fields of RECORD_FIELDS from ``cert_subject`` on)
    from the certificates' ``info``: subject, issuer, thumbprints and validity."""
    kind, certs = _certificates(_dict(attestation.get("x509")))
    if not certs:
        return kind, "", "", "", "", None, None, None
    primary = _dict(_dict(certs.get("primary")).get("info"))
    secondary = _dict(_dict(certs.get("secondary")).get("info"))
    p_after = dps_time(primary.get("notAfterUtc"))
    s_after = dps_time(secondary.get("notAfterUtc"))
    afters = [t for t in (p_after, s_after) if t is not None]
    return (
        kind,
        _text(primary.get("subjectName"), 512),
        _text(primary.get("issuerName"), 512),
        _text(primary.get("sha256Thumbprint") or primary.get("sha1Thumbprint"), 64),
        _text(secondary.get("sha256Thumbprint") or secondary.get("sha1Thumbprint"), 64),
        p_after,
        s_after,
        min(afters) if afters else None,
    )


def record_values(kind: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    """Return the values of RECORD_FIELDS, in that order, of an enrollment or group document.

    A tuple, not a dict: a pass's first COPY writes a million of them.
    """
    attestation = _dict(doc.get("attestation"))
    twin = _dict(doc.get("initialTwin"))
    reprovision = _dict(doc.get("reprovisionPolicy"))
    hubs = doc.get("iotHubs")
    x509_kind, *certs = _cert_values(attestation)
    return (
        _text(doc.get("enrollmentGroupId" if kind == GROUP else "registrationId"), 128),
        _text(doc.get("deviceId"), 128),
        _text(attestation.get("type"), 16),
        x509_kind,
        _text(doc.get("provisioningStatus"), 16) or "enabled",
        _text(doc.get("iotHubHostName"), 255),
        [h for h in hubs if isinstance(h, str)] if isinstance(hubs, list) else [],
        _text(doc.get("allocationPolicy"), 16),
        reprovision.get("updateHubAssignment"),
        reprovision.get("migrateDeviceData"),
        _dict(doc.get("capabilities")).get("iotEdge") is True,
        _dict(twin.get("tags")),
        _dict(_dict(twin.get("properties")).get("desired")),
        _text(doc.get("etag"), 128),
        dps_time(doc.get("createdDateTimeUtc")),
        dps_time(doc.get("lastUpdatedDateTimeUtc")),
        *certs,
    )


def record_fields(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Return the IndexedRecord fields (RECORD_FIELDS) of an enrollment or group document."""
    return dict(zip(RECORD_FIELDS, record_values(kind, doc), strict=True))


def record_key(kind: str, doc: dict[str, Any]) -> str:
    """Return the lower-cased id of an enrollment or group document ("" when it has none)."""
    rid = doc.get("enrollmentGroupId" if kind == GROUP else "registrationId")
    return rid.lower() if isinstance(rid, str) else ""


def registration_fields(doc: dict[str, Any], group_key: str) -> dict[str, Any]:
    """Return the IndexedRegistration fields (REGISTRATION_FIELDS) of a registration record."""
    code = doc.get("errorCode")
    return {
        "registration_id": _text(doc.get("registrationId"), 128),
        "group_key": group_key,
        "device_id": _text(doc.get("deviceId"), 128),
        "status": _text(doc.get("status"), 16),
        "substatus": _text(doc.get("substatus"), 32),
        "assigned_hub": _text(doc.get("assignedHub"), 255),
        "error_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "error_message": _text(doc.get("errorMessage"), 2000),
        "etag": _text(doc.get("etag"), 128),
        "created": dps_time(doc.get("createdDateTimeUtc")),
        "updated": dps_time(doc.get("lastUpdatedDateTimeUtc")),
    }


def row_snapshot(row: Any) -> dict[str, Any] | None:
    """Return an index row as JSON for an audit event's before/after (None when no row)."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = getattr(row, name) if not isinstance(row, dict) else row.get(name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
