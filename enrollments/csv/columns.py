"""The columns of the CSV format, the spellings a header may use, and cell neutralising.

Cells that start with ``= + - @`` (or tab / carriage return) would run as formulas in a
spreadsheet. Export prefixes them with ``'``; import strips that one quote again, and refuses
a cell that still starts with such a character, since it most likely came from a spreadsheet
formula rather than from the operator's data.
"""

from __future__ import annotations

import re

#: Canonical column names, in the order export writes them.
COLUMNS: tuple[str, ...] = (
    "operation",
    "registrationId",
    "deviceId",
    "provisioningStatus",
    "attestationType",
    "tpmEndorsementKey",
    "tpmStorageRootKey",
    "symmetricKeyPrimary",
    "symmetricKeySecondary",
    "x509CertificatePrimary",
    "x509CertificateSecondary",
    "x509ThumbprintPrimary",
    "x509ThumbprintSecondary",
    "x509CaReferencePrimary",
    "x509CaReferenceSecondary",
    "iotHubs",
    "iotHubHostName",
    "allocationPolicy",
    "webhookUrl",
    "webhookApiVersion",
    "reprovisionPolicy",
    "iotEdge",
    "twinTags",
    "twinDesiredProperties",
    "optionalDeviceInformation",
    "etag",
)
OPERATIONS: tuple[str, ...] = ("create", "update", "upsert", "delete")
KEY_COLUMNS = ("symmetricKeyPrimary", "symmetricKeySecondary")
CERT_COLUMNS = ("x509CertificatePrimary", "x509CertificateSecondary")
#: The JSON columns: compared as JSON, not as text.
JSON_COLUMNS = ("twinTags", "twinDesiredProperties", "optionalDeviceInformation")

#: First characters that make a spreadsheet run a cell as a formula.
FORMULA_START = frozenset("=+-@\t\r")
_NEUTRALISED = re.compile(r"^'+[=+\-@\t\r]")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_BY_NORM: dict[str, str] = {_norm(c): c for c in COLUMNS}
# Accepted spellings besides the canonical ones.
_BY_NORM.update({"mode": "operation", "action": "operation", "id": "registrationId"})


def canonical_column(name: str) -> str | None:
    """Return the column a header cell names (any case; spaces, ``_`` and ``-`` ignored)."""
    return _BY_NORM.get(_norm(name))


def names_registration_id(text: str) -> bool:
    """Return whether ``text`` holds the registrationId column's name in any spelling."""
    return "registrationid" in _norm(text)


def neutralise(value: str) -> str:
    """Return ``value`` safe to open in a spreadsheet: formula starts get a leading ``'``.

    A value that already starts with quotes followed by a formula character gets one more,
    so :func:`unneutralise` restores every value exactly.
    """
    if value and value.lstrip("'")[:1] in FORMULA_START:
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """Reverse :func:`neutralise`."""
    if value[:1] == "'" and _NEUTRALISED.match(value):
        return value[1:]
    return value
