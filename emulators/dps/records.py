"""Turn client JSON into stored DPS records, and stored records into response documents.

Validation raises :class:`DpsError` (400xxx) with a message naming the property. Stored
records are complete (symmetric keys included, certificates reduced to ``info``) and in
the property order the real service answers with (recordings/README.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulators.dps import errors as e
from emulators.dps.errors import DpsError

# API.md §9: alphanumerics plus - . _ :, at most 128, last character alphanumeric or '-'.
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._:-]{0,126}[a-z0-9-])?$", re.IGNORECASE)
# IoT Hub device id grammar (≤128 of alphanumerics and - . % _ * ? ! ( ) , : = @ $ ').
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")
API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
MIN_WEBHOOK_API_VERSION = "2018-09-01"

ALLOCATION_POLICIES = ("hashed", "geoLatency", "static", "custom")
PROVISIONING_STATUSES = ("enabled", "disabled")
ATTESTATION_TYPES = ("none", "tpm", "x509", "symmetricKey")
DEFAULT_ALLOCATION = "hashed"
SYMMETRIC_KEY_BYTES = 64

ENROLLMENT_ORDER = (
    "registrationId",
    "deviceId",
    "registrationState",
    "optionalDeviceInformation",
    "attestation",
    "capabilities",
    "iotHubHostName",
    "initialTwin",
    "etag",
    "provisioningStatus",
    "reprovisionPolicy",
    "createdDateTimeUtc",
    "lastUpdatedDateTimeUtc",
    "allocationPolicy",
    "iotHubs",
    "customAllocationDefinition",
)
GROUP_ORDER = ("enrollmentGroupId", *ENROLLMENT_ORDER[3:])


def _bad(message: str, code: int = e.INVALID_FIELD) -> DpsError:
    return DpsError(code, message)


def check_id(value: Any, what: str) -> str:
    """Return ``value`` if it is a valid registration or enrollment group id."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise _bad(
            f"Invalid {what}: use up to 128 letters, digits and - . _ : ending in a letter, "
            "digit or '-'.",
            e.INVALID_ID,
        )
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"'{where}' must be a JSON object.")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{where}' must be a string.")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"'{where}' must be true or false.")
    return value


def _twin_collection(value: Any, where: str) -> dict[str, Any]:
    obj = _obj(value, where)
    for meta, kind in (("version", int), ("count", int)):
        if (
            meta in obj
            and obj[meta] is not None
            and (not isinstance(obj[meta], kind) or isinstance(obj[meta], bool))
        ):
            raise _bad(f"'{where}.{meta}' must be an integer.")
    if obj.get("metadata") is not None:
        _obj(obj["metadata"], f"{where}.metadata")
    return obj


# -- attestation -------------------------------------------------------------------------
def _key(value: Any, where: str) -> str:
    if value is None or value == "":
        return base64.b64encode(secrets.token_bytes(SYMMETRIC_KEY_BYTES)).decode("ascii")
    text = _str(value, where)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"'{where}' is not valid base64.", e.INVALID_ATTESTATION) from None
    if not 16 <= len(raw) <= 64:
        raise _bad(f"'{where}' must decode to 16 to 64 bytes.", e.INVALID_ATTESTATION)
    return text


def _b64_blob(value: Any, where: str) -> str:
    text = _str(value, where)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"'{where}' is not valid base64.", e.INVALID_ATTESTATION) from None
    if not raw:
        raise _bad(f"'{where}' must not be empty.", e.INVALID_ATTESTATION)
    return text


def _dn(name: x509.Name) -> str:
    # .NET-style distinguished name: most specific RDN first, ", " between parts.
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_info(text: Any, where: str) -> dict[str, Any]:
    """Parse a PEM or base64-DER certificate and return its X509CertificateInfo."""
    pem = _str(text, where).strip()
    try:
        if "-----BEGIN" in pem:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode(pem, validate=True))
        der = cert.public_bytes(serialization.Encoding.DER)
        serial = f"{cert.serial_number:X}"
        info = {
            "subjectName": _dn(cert.subject),
            "sha1Thumbprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - thumbprint
            "sha256Thumbprint": hashlib.sha256(der).hexdigest().upper(),
            "issuerName": _dn(cert.issuer),
            "notBeforeUtc": _time(cert.not_valid_before_utc),
            "notAfterUtc": _time(cert.not_valid_after_utc),
            "serialNumber": serial if len(serial) % 2 == 0 else "0" + serial,
            "version": cert.version.value + 1,
        }
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise _bad(
            f"'{where}' is not a valid X.509 certificate (PEM or base64 DER).",
            e.INVALID_ATTESTATION,
        ) from None
    return info


def _certificates(value: Any, where: str) -> dict[str, Any]:
    obj = _obj(value, where)
    out: dict[str, Any] = {}
    for slot in ("primary", "secondary"):
        item = obj.get(slot)
        if item is None:
            continue
        item = _obj(item, f"{where}.{slot}")
        if item.get("certificate") in (None, ""):
            raise _bad(f"'{where}.{slot}.certificate' is required.", e.INVALID_ATTESTATION)
        out[slot] = {"info": certificate_info(item["certificate"], f"{where}.{slot}.certificate")}
    if "primary" not in out:
        raise _bad(f"'{where}.primary' is required.", e.INVALID_ATTESTATION)
    # Observed: a lone primary is reported as the secondary too.
    out.setdefault("secondary", {"info": dict(out["primary"]["info"])})
    return out


def attestation(value: Any, *, group: bool) -> dict[str, Any]:
    """Validate an AttestationMechanism and return it as stored (keys filled in)."""
    if value is None:
        raise _bad("'attestation' is required.", e.INVALID_ATTESTATION)
    att = _obj(value, "attestation")
    kind = att.get("type")
    if kind not in ATTESTATION_TYPES:
        raise _bad(
            "'attestation.type' must be one of tpm, x509, symmetricKey.", e.INVALID_ATTESTATION
        )
    if kind == "none":
        raise _bad("Attestation type 'none' cannot be enrolled.", e.INVALID_ATTESTATION)
    if kind == "tpm":
        return _tpm_attestation(att, group=group)
    if kind == "symmetricKey":
        return _symmetric_key_attestation(att)
    return _x509_attestation(att, group=group)


def _tpm_attestation(att: dict[str, Any], *, group: bool) -> dict[str, Any]:
    if group:
        raise _bad("Enrollment groups do not support TPM attestation.", e.INVALID_ATTESTATION)
    tpm = _obj(att.get("tpm"), "attestation.tpm")
    if tpm.get("endorsementKey") in (None, ""):
        raise _bad("'attestation.tpm.endorsementKey' is required.", e.INVALID_ATTESTATION)
    stored_tpm = {"endorsementKey": _b64_blob(tpm["endorsementKey"], "endorsementKey")}
    if tpm.get("storageRootKey") not in (None, ""):
        stored_tpm["storageRootKey"] = _b64_blob(tpm["storageRootKey"], "storageRootKey")
    return {"type": "tpm", "tpm": stored_tpm}


def _symmetric_key_attestation(att: dict[str, Any]) -> dict[str, Any]:
    sym = att.get("symmetricKey")
    sym = {} if sym is None else _obj(sym, "attestation.symmetricKey")
    return {
        "type": "symmetricKey",
        "symmetricKey": {
            "primaryKey": _key(sym.get("primaryKey"), "attestation.symmetricKey.primaryKey"),
            "secondaryKey": _key(sym.get("secondaryKey"), "attestation.symmetricKey.secondaryKey"),
        },
    }


def _x509_attestation(att: dict[str, Any], *, group: bool) -> dict[str, Any]:
    x = _obj(att.get("x509"), "attestation.x509")
    present = [k for k in ("clientCertificates", "signingCertificates", "caReferences") if x.get(k)]
    allowed = (
        ("signingCertificates", "caReferences") if group else ("clientCertificates", "caReferences")
    )
    if len(present) != 1 or present[0] not in allowed:
        raise _bad(
            f"'attestation.x509' must hold exactly one of {' or '.join(allowed)}.",
            e.INVALID_ATTESTATION,
        )
    which = present[0]
    if which == "caReferences":
        refs = _obj(x["caReferences"], "attestation.x509.caReferences")
        out_refs = {
            slot: _str(refs[slot], f"attestation.x509.caReferences.{slot}")
            for slot in ("primary", "secondary")
            if refs.get(slot) is not None
        }
        if "primary" not in out_refs:
            raise _bad(
                "'attestation.x509.caReferences.primary' is required.", e.INVALID_ATTESTATION
            )
        return {"type": "x509", "x509": {"caReferences": out_refs}}
    return {"type": "x509", "x509": {which: _certificates(x[which], f"attestation.x509.{which}")}}


# -- enrollments and groups -----------------------------------------------------------------
def _common(body: dict[str, Any], linked_hubs: tuple[str, ...]) -> dict[str, Any]:
    """Validate the fields enrollments and groups share, in the order DPS reports them."""
    out: dict[str, Any] = {}
    if body.get("capabilities") is not None:
        caps = _obj(body["capabilities"], "capabilities")
        out["capabilities"] = {"iotEdge": _bool(caps.get("iotEdge", False), "capabilities.iotEdge")}
    if body.get("iotHubHostName") is not None:
        out["iotHubHostName"] = _str(body["iotHubHostName"], "iotHubHostName")
    if body.get("initialTwin") is not None:
        out["initialTwin"] = _initial_twin(body["initialTwin"])
    out["provisioningStatus"] = _provisioning_status(body)
    if body.get("reprovisionPolicy") is not None:
        out["reprovisionPolicy"] = _reprovision_policy(body["reprovisionPolicy"])
    policy = body.get("allocationPolicy")
    if policy is None:
        policy = DEFAULT_ALLOCATION
    elif policy not in ALLOCATION_POLICIES:
        raise _bad("'allocationPolicy' must be one of hashed, geoLatency, static, custom.")
    out["allocationPolicy"] = policy
    if body.get("iotHubs") is not None:
        out["iotHubs"] = _iot_hubs(body["iotHubs"], linked_hubs)
    if body.get("customAllocationDefinition") is not None:
        out["customAllocationDefinition"] = _custom_allocation(body["customAllocationDefinition"])
    elif policy == "custom":
        raise _bad("allocationPolicy 'custom' needs a customAllocationDefinition.")
    return out


def _initial_twin(value: Any) -> dict[str, Any]:
    twin = _obj(value, "initialTwin")
    stored: dict[str, Any] = {}
    if twin.get("tags") is not None:
        stored["tags"] = _twin_collection(twin["tags"], "initialTwin.tags")
    if twin.get("properties") is not None:
        props = _obj(twin["properties"], "initialTwin.properties")
        stored["properties"] = {}
        if props.get("desired") is not None:
            stored["properties"]["desired"] = _twin_collection(
                props["desired"], "initialTwin.properties.desired"
            )
    return stored


def _provisioning_status(body: dict[str, Any]) -> str | None:
    if "provisioningStatus" not in body:
        return "enabled"
    status = body["provisioningStatus"]
    if status is None:
        return None  # observed: an explicit null is stored and echoed
    if status in PROVISIONING_STATUSES:
        return str(status)
    raise _bad("'provisioningStatus' must be enabled or disabled.")


def _reprovision_policy(value: Any) -> dict[str, bool]:
    rp = _obj(value, "reprovisionPolicy")
    return {
        "updateHubAssignment": _bool(
            rp.get("updateHubAssignment", True), "reprovisionPolicy.updateHubAssignment"
        ),
        "migrateDeviceData": _bool(
            rp.get("migrateDeviceData", True), "reprovisionPolicy.migrateDeviceData"
        ),
    }


def _iot_hubs(hubs: Any, linked_hubs: tuple[str, ...]) -> list[str]:
    if not isinstance(hubs, list) or not all(isinstance(h, str) for h in hubs):
        raise _bad("'iotHubs' must be an array of strings.")
    known = {h.lower() for h in linked_hubs}
    unknown = [h for h in hubs if h.lower() not in known]
    if unknown:
        raise _bad(f"'iotHubs' names hubs not linked to this service: {', '.join(unknown)}.")
    return list(hubs)


def _custom_allocation(value: Any) -> dict[str, str]:
    cad = _obj(value, "customAllocationDefinition")
    url = _str(cad.get("webhookUrl"), "customAllocationDefinition.webhookUrl")
    if not re.match(r"^https?://[^\s/]+", url):
        raise _bad("'customAllocationDefinition.webhookUrl' must be an absolute URL.")
    ver = _str(cad.get("apiVersion"), "customAllocationDefinition.apiVersion")
    if not API_VERSION_RE.match(ver) or ver[:10] < MIN_WEBHOOK_API_VERSION:
        raise _bad(
            "'customAllocationDefinition.apiVersion' must be an api-version from "
            "2018-09-01-preview on."
        )
    return {"webhookUrl": url, "apiVersion": ver}


def _ordered(doc: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {k: doc[k] for k in order if k in doc}


def _body_id(body: dict[str, Any], field: str, path_id: str) -> str:
    """Return the record id the body names: present, well-formed and the path's id."""
    value = body.get(field)
    if value is None:
        raise _bad(f"'{field}' is required.", e.INVALID_ID)
    checked = check_id(value, field)
    if checked.lower() != path_id.lower():
        raise _bad(f"'{field}' in the body differs from the id in the path.", e.ID_MISMATCH)
    return checked


def enrollment_from_body(body: Any, path_id: str, linked_hubs: tuple[str, ...]) -> dict[str, Any]:
    """Validate an IndividualEnrollment body; return the record without etag/timestamps."""
    body = _obj(body, "enrollment") if not isinstance(body, dict) else body
    rid = _body_id(body, "registrationId", path_id)
    doc: dict[str, Any] = {"registrationId": rid}
    if body.get("deviceId") is not None:
        dev = _str(body["deviceId"], "deviceId")
        if not DEVICE_ID_RE.match(dev):
            raise _bad("'deviceId' is not a valid IoT Hub device id.")
        doc["deviceId"] = dev
    if body.get("optionalDeviceInformation") is not None:
        doc["optionalDeviceInformation"] = _twin_collection(
            body["optionalDeviceInformation"], "optionalDeviceInformation"
        )
    doc["attestation"] = attestation(body.get("attestation"), group=False)
    doc.update(_common(body, linked_hubs))
    return doc


def group_from_body(body: Any, path_id: str, linked_hubs: tuple[str, ...]) -> dict[str, Any]:
    """Validate an EnrollmentGroup body; return the record without etag/timestamps."""
    body = _obj(body, "enrollmentGroup") if not isinstance(body, dict) else body
    gid = _body_id(body, "enrollmentGroupId", path_id)
    doc: dict[str, Any] = {"enrollmentGroupId": gid}
    doc["attestation"] = attestation(body.get("attestation"), group=True)
    doc.update(_common(body, linked_hubs))
    return doc


def stamp(
    doc: dict[str, Any], *, etag: str, created: str, updated: str, group: bool
) -> dict[str, Any]:
    """Add etag and timestamps and put the properties in the service's order."""
    doc = {**doc, "etag": etag, "createdDateTimeUtc": created, "lastUpdatedDateTimeUtc": updated}
    return _ordered(doc, GROUP_ORDER if group else ENROLLMENT_ORDER)


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the record as GET and query show it: symmetric keys removed."""
    att = doc.get("attestation") or {}
    if att.get("type") != "symmetricKey":
        return doc
    return {**doc, "attestation": {"type": "symmetricKey"}}


def with_registration_state(doc: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Return an individual enrollment with ``registrationState`` in its observed place."""
    return _ordered({**doc, "registrationState": state}, ENROLLMENT_ORDER)
