"""Refuse an import's rows that name a hub not linked to the instance or a CA not verified there.

Parsing a file needs no user; this check does, since what is linked and verified is read through
ARM as the job's owner. It runs once the rows are stored and before the preview plans them, on
the rows that name a hub or a CA reference only, so a file without either costs no ARM call.

When ARM cannot be read at that moment the check raises
:class:`~authn.exceptions.PermissionLookupFailed`: the job waits as for any outage and resumes
by itself, so no row passes unchecked. When the owner's role may not read the hubs or the CA
certificates, the rows pass as the forms' text fields do, and the job's options keep the
reason for the preview to show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from authn.capabilities import ControlCapability, capabilities_resolve
from authn.exceptions import PermissionLookupFailed
from controlplane.references import References, check_ca_reference, check_iot_hubs
from controlplane.selectors import linked_hubs, verified_ca_certificates
from enrollments.bulk.store import rows_plan_save
from enrollments.models import BulkJob, BulkRow, RowPlan
from instances.models import DpsInstance

BATCH = 1000
#: The job option holding why hubs or CAs were not checked (shown by the preview).
UNCHECKED_OPTION = "references_unchecked"
# A payload names a hub (``iotHubs`` or the legacy ``iotHubHostName``) or CA references.
_NAMES_REFERENCE = Q(payload__contains='"iotHub') | Q(payload__contains='"caReferences"')
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def owner_references(owner: Any, instance: DpsInstance) -> References:
    """Return what ``owner`` sees linked and verified; raise PermissionLookupFailed on an outage."""
    caps = capabilities_resolve(owner, instance)
    if caps.error:
        raise PermissionLookupFailed(caps.error)
    hubs = linked_hubs(owner, instance)
    cas = verified_ca_certificates(owner, instance)
    # A reason while the role allows the read means ARM failed to answer, not a refusal.
    if not hubs.available and ControlCapability.INSTANCE_READ.value in caps:
        raise PermissionLookupFailed(hubs.reason)
    if not cas.available and ControlCapability.CERTIFICATES_READ.value in caps:
        raise PermissionLookupFailed(cas.reason)
    return References.of(hubs, cas)


def row_reference_errors(payload: dict[str, Any], refs: References) -> list[dict[str, str]]:
    """Return the ``{"column", "message"}`` errors of one row's hubs and CA references."""
    errors: list[dict[str, str]] = []
    if refs.hubs is not None:
        for column, hubs in (
            ("iotHubs", payload.get("iotHubs") or []),
            ("iotHubHostName", [payload.get("iotHubHostName") or ""]),
        ):
            try:
                check_iot_hubs(hubs, refs.hubs)
            except ValidationError as exc:
                errors.append({"column": column, "message": exc.messages[0]})
    x509 = (payload.get("attestation") or {}).get("x509") or {}
    ca_refs = x509.get("caReferences") or {}
    if refs.cas is not None:
        for column, key in (
            ("x509CaReferencePrimary", "primary"),
            ("x509CaReferenceSecondary", "secondary"),
        ):
            if ca_refs.get(key):
                try:
                    check_ca_reference(ca_refs[key], refs.cas)
                except ValidationError as exc:
                    errors.append({"column": column, "message": exc.messages[0]})
    return errors


def references_check(
    job: BulkJob,
    *,
    lookup: Callable[[Any, DpsInstance], References] = owner_references,
) -> int:
    """Mark invalid the pending rows of ``job`` naming an unlinked hub or unverified CA.

    Return how many rows were refused. Raises PermissionLookupFailed (ARM unreachable) or
    ReauthRequired (the owner must sign in again) before any row is changed.
    """
    pending = BulkRow.objects.filter(job=job, plan=RowPlan.PENDING).exclude(operation="delete")
    pending = pending.filter(_NAMES_REFERENCE)
    if not pending.exists():
        return 0
    refs = lookup(job.owner, job.instance)
    unchecked = " ".join(r for r in (refs.hub_reason, refs.ca_reason) if r)
    if job.options.get(UNCHECKED_OPTION, "") != unchecked:
        job.options = {**job.options, UNCHECKED_OPTION: unchecked}
        job.save(update_fields=["options"])
    if refs.hubs is None and refs.cas is None:
        return 0
    refused, last = 0, 0
    while True:
        rows = list(pending.filter(id__gt=last).order_by("id")[:BATCH])
        if not rows:
            return refused
        last = rows[-1].id
        changed = []
        for row in rows:
            errors = row_reference_errors(json.loads(row.payload), refs)
            if errors:
                row.errors = _dumps([*(json.loads(row.errors) if row.errors else []), *errors])
                row.plan = RowPlan.INVALID
                changed.append(row)
        with transaction.atomic():
            rows_plan_save(changed)
        refused += len(changed)
