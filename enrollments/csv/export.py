"""Write the CSV format: DPS enrollment JSON to cells, cells to neutralised CSV lines.

Writing produces exactly what :mod:`enrollments.csv.reader` accepts, so export → import
round-trips.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from typing import IO, Any

from enrollments import validation as v
from enrollments.csv.columns import COLUMNS, neutralise


def enrollment_to_row(
    enrollment: Mapping[str, Any], *, keys: Mapping[str, Any] | None = None, operation: str = ""
) -> dict[str, str]:
    """Return the CSV cells (unneutralised) of DPS enrollment JSON.

    ``keys`` is the symmetric-key attestation read through the attestation-mechanism call;
    keys are written only when it is given.
    """
    row = dict.fromkeys(COLUMNS, "")
    row["operation"] = operation
    row["registrationId"] = str(enrollment.get("registrationId") or "")
    row["deviceId"] = str(enrollment.get("deviceId") or "")
    row["provisioningStatus"] = str(enrollment.get("provisioningStatus") or "enabled")
    row.update(_attestation_cells(enrollment.get("attestation") or {}, keys))
    row["iotHubs"] = " ".join(enrollment.get("iotHubs") or [])
    row["iotHubHostName"] = str(enrollment.get("iotHubHostName") or "")
    row["allocationPolicy"] = str(enrollment.get("allocationPolicy") or "")
    custom = enrollment.get("customAllocationDefinition") or {}
    row["webhookUrl"] = str(custom.get("webhookUrl") or "")
    row["webhookApiVersion"] = str(custom.get("apiVersion") or "")
    row["reprovisionPolicy"] = _reprovision_text(enrollment.get("reprovisionPolicy"))
    caps = enrollment.get("capabilities")
    row["iotEdge"] = _bool_text(caps.get("iotEdge")) if caps else ""
    twin = enrollment.get("initialTwin") or {}
    row["twinTags"] = json_text(twin.get("tags"))
    row["twinDesiredProperties"] = json_text((twin.get("properties") or {}).get("desired"))
    row["optionalDeviceInformation"] = json_text(enrollment.get("optionalDeviceInformation"))
    row["etag"] = str(enrollment.get("etag") or "")
    return row


def _attestation_cells(att: Mapping[str, Any], keys: Mapping[str, Any] | None) -> dict[str, str]:
    kind = str(att.get("type") or "")
    cells = {"attestationType": kind}
    if kind == "tpm":
        tpm = att.get("tpm") or {}
        cells["tpmEndorsementKey"] = str(tpm.get("endorsementKey") or "")
        cells["tpmStorageRootKey"] = str(tpm.get("storageRootKey") or "")
    elif kind == "symmetricKey" and keys:
        cells["symmetricKeyPrimary"] = str(keys.get("primaryKey") or "")
        cells["symmetricKeySecondary"] = str(keys.get("secondaryKey") or "")
    elif kind == "x509":
        x = att.get("x509") or {}
        certs = x.get("clientCertificates") or {}
        refs = x.get("caReferences") or {}
        for slot, cert_col, thumb_col in (
            ("primary", "x509CertificatePrimary", "x509ThumbprintPrimary"),
            ("secondary", "x509CertificateSecondary", "x509ThumbprintSecondary"),
        ):
            entry = certs.get(slot) or {}
            cells[cert_col] = str(entry.get("certificate") or "")
            cells[thumb_col] = str((entry.get("info") or {}).get("sha256Thumbprint") or "").upper()
        cells["x509CaReferencePrimary"] = str(refs.get("primary") or "")
        cells["x509CaReferenceSecondary"] = str(refs.get("secondary") or "")
    return cells


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


def _reprovision_text(policy: Mapping[str, Any] | None) -> str:
    if not policy:
        return ""
    pair = (bool(policy.get("updateHubAssignment")), bool(policy.get("migrateDeviceData")))
    for name, values in v.REPROVISION_CHOICES.items():
        if values == pair:
            return name
    return f"updateHubAssignment={_bool_text(pair[0])};migrateDeviceData={_bool_text(pair[1])}"


def json_text(value: Any) -> str:
    """Return the cell of a JSON column: compact, keys sorted, blank for None."""
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class _Echo:
    """A file-like object whose ``write`` returns the line, for streaming responses."""

    def write(self, value: str) -> str:
        return value


def csv_line(cells: Iterable[str], *, delimiter: str = ",") -> str:
    """Return one CSV line (with CRLF) of neutralised cells."""
    writer = csv.writer(_Echo(), delimiter=delimiter, lineterminator="\r\n")
    return str(writer.writerow([neutralise(str(cell)) for cell in cells]))


def write_rows(out: IO[str], rows: Iterable[Mapping[str, str]], *, header: bool = True) -> int:
    """Write the header and rows in the canonical column order; return the row count."""
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([neutralise(row.get(c, "")) for c in COLUMNS])
        count += 1
    return count
