"""Change only the provisioning status of selected enrollments or groups, one record at a time.

DPS's bulk call replaces whole enrollments, so a status job reads each record (GET), checks
that DPS still holds the version the fleet index saw, and PUTs it back with the new status
and ``If-Match`` = that ETag through :func:`enrollments.services.record_status_set`: the same
code path as the detail page's toggle, so each change is audited and written through to the
index, and symmetric keys are carried unchanged. Every call takes a token from the instance's
shared bucket. Selected groups are deleted here too, one call per group (DPS has no bulk
call for groups), each with ``If-Match`` = the index's ETag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable
from typing import Any

from django.core.exceptions import ValidationError

from authn.permissions import Capability
from enrollments.bulk.calls import paced
from enrollments.dps.exceptions import DpsNotFound
from enrollments.dps.types import DpsApi
from enrollments.edit_rules import status_blocker
from enrollments.models import BulkRow, RowStatus
from enrollments.ratelimit import TokenBucket
from enrollments.services import group_delete, record_status_set

#: ``(status, error_code, message)`` of one row.
Outcome = tuple[str, str, str]

CHANGED_SINCE = "The record changed in DPS since the index saw it; the status was not changed."
GONE_SINCE = "The record was deleted in DPS since the index saw it."
CHANGED_NOT_DELETED = "The group changed in DPS since the index saw it; it was not deleted."
DELETED_IN_DOUBT = "Deleted (confirmed after an interrupted attempt)."

#: The DpsApi method reading one record of each kind.
_GET = {"enrollment": "enrollment_get", "group": "group_get"}


class LeaseLost(Exception):
    """The row's lease ran out while it waited for a turn, and another worker took it."""


def held_capabilities(names: Iterable[str]) -> frozenset[Capability]:
    """Return the data-plane capabilities among ``names`` (others are not this module's)."""
    known = {c.value for c in Capability}
    return frozenset(Capability(n) for n in names if n in known)


def target_status(row: BulkRow) -> str:
    """Return the status ``row`` asks for."""
    return str(json.loads(row.payload)["provisioningStatus"])


def status_apply(
    row: BulkRow,
    *,
    owner: Any,
    instance: Any,
    client: DpsApi,
    bucket: TokenBucket,
    caps: Container[Capability],
    claim_send: Callable[[], bool],
    record_kind: str = "enrollment",
) -> Outcome:
    """Apply one status row; DPS errors of the write propagate for the runner to sort.

    ``caps`` are the owner's capabilities now: a record whose change the role cannot make
    without losing something (keys it may not read, certificates DPS does not return) fails
    with the reason instead of being written. ``claim_send`` marks the row as sent (an attempt) and returns False if the row's lease was
    lost meanwhile. A row found in doubt (a previous attempt may have applied it) goes the same
    way: a record already holding the status is done, whoever changed it.
    """
    target = target_status(row)
    get = getattr(client, _GET[record_kind])
    try:
        current = paced(bucket, lambda: get(row.registration_id))
    except DpsNotFound:
        return RowStatus.CONFLICT, "404", GONE_SINCE
    if current.provisioning_status == target:
        return RowStatus.DONE, "", f"Already {target}."
    # The index's ETag is empty for a record the portal itself just wrote in bulk (DPS's bulk
    # answer carries none); the version read a moment ago stands in for it then.
    etag = row.etag or current.etag or ""
    if current.etag != etag:
        return RowStatus.CONFLICT, "412", CHANGED_SINCE
    blocker = status_blocker(current, caps)
    if blocker:
        return RowStatus.FAILED, "", blocker
    if current.attestation.type == "symmetricKey":
        bucket.acquire()  # the keys are read to be carried unchanged: one more call
    bucket.acquire()
    if not claim_send():
        raise LeaseLost
    try:
        record_status_set(
            actor=owner, instance=instance, client=client, model=current, status=target, etag=etag
        )
    except ValidationError as exc:  # the record needs what DPS does not return
        return RowStatus.FAILED, "", " ".join(exc.messages)
    return RowStatus.DONE, "", ""


def group_delete_apply(
    row: BulkRow,
    *,
    owner: Any,
    instance: Any,
    client: DpsApi,
    bucket: TokenBucket,
    claim_send: Callable[[], bool],
) -> Outcome:
    """Delete one selected group with the index's ETag; DPS errors propagate for the runner.

    A row in doubt (a previous attempt may have deleted the group) is read first: a group
    gone is done, one changed since is a conflict. Audited and written through to the index
    by :func:`enrollments.services.group_delete`.
    """
    etag = row.etag
    if row.status == RowStatus.SENDING or not etag:
        try:
            current = paced(bucket, lambda: client.group_get(row.registration_id))
        except DpsNotFound:
            if row.status == RowStatus.SENDING:
                return RowStatus.DONE, "", DELETED_IN_DOUBT
            return RowStatus.CONFLICT, "404", GONE_SINCE
        etag = etag or current.etag or ""
        if current.etag != etag:
            return RowStatus.CONFLICT, "412", CHANGED_NOT_DELETED
    bucket.acquire()
    if not claim_send():
        raise LeaseLost
    group_delete(
        actor=owner, instance=instance, client=client, group_id=row.registration_id, etag=etag
    )
    return RowStatus.DONE, "", ""
