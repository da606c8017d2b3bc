"""When an enrollment or a group may be changed from the portal, and how two versions differ.

Pure rules over DPS records and the user's capabilities: the views ask them to decide what
to offer, and the conflict page shows :func:`diff_rows`.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from audit.diff import flatten, json_diff, show
from audit.redaction import redact
from authn.permissions import Capability
from enrollments.forms import EnrollmentForm

# Fields DPS sets itself: never part of what a user changed.
READ_ONLY = frozenset({"registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"})
MISSING = "—"


def edit_blocker(model: Any, caps: Container[Capability]) -> str:
    """Return why an edit or status change cannot be offered, or '' when it can."""
    if model.attestation.type == "symmetricKey" and Capability.ATTESTATION_REVEAL not in caps:
        return (
            "Changing a symmetric-key record must carry its keys, which are read with the "
            "attestation-mechanism action your role lacks; without them DPS would generate new "
            "keys and every device would lose access."
        )
    return ""


def status_blocker(model: Any, caps: Container[Capability]) -> str:
    """Return why the inline enable/disable toggle cannot be offered, or '' when it can."""
    blocker = edit_blocker(model, caps)
    if not blocker and EnrollmentForm.needs_certificates(model):
        blocker = "DPS does not return certificates: use Edit and paste the certificate again."
    return blocker


def _comparable(model: Any) -> dict[str, str]:
    """Return the record's fields a user sets, flattened to dotted paths, as text."""
    data = {k: v for k, v in model.to_json().items() if k not in READ_ONLY}
    # GET masks symmetric keys and an absent capability means "no IoT Edge": compare what the
    # user can actually see differ, not artefacts of the read.
    data.get("attestation", {}).pop("symmetricKey", None)
    data.setdefault("capabilities", {"iotEdge": False})
    flat = flatten(redact(data), split_lists=False)
    return {path: show(value, ensure_ascii=True) for path, value in flat.items()}


def diff_rows(current: Any, mine: Any) -> list[dict[str, Any]]:
    """Return field-by-field rows of two records, secrets masked, changed ones flagged."""
    rows = sorted(json_diff(_comparable(current), _comparable(mine)), key=lambda r: r.path)
    return [
        {
            "path": row.path,
            "current": MISSING if row.change == "added" else row.before,
            "mine": MISSING if row.change == "removed" else row.after,
            "changed": row.change != "same",
        }
        for row in rows
    ]
