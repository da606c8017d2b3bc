"""Write, delete and reveal operations on DPS enrollments, groups and registration records.

Each service makes one DPS call as the user (the ``client`` from
:func:`enrollments.clients.dps_client_for`) and records an audit event right after it with the
outcome: DPS status, errorCode and trackingId on failure, before/after on success (secrets are
redacted by the audit writer). A 403 from DPS also drops the user's cached capabilities, so
the next page hides what the role no longer allows. DPS errors propagate for the view to show.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ValidationError

from audit.models import AuditAction, AuditOutcome, AuditTargetType
from audit.services import audit_record
from authn.capabilities import capabilities_invalidate
from enrollments.dps.exceptions import DpsError, DpsForbidden
from enrollments.dps.types import (
    AttestationMechanism,
    DpsApi,
    EnrollmentGroup,
    IndividualEnrollment,
)
from enrollments.keys import derive_device_key
from fleet.services import registration_deleted, tracked

T = TypeVar("T")
M = TypeVar("M", IndividualEnrollment, EnrollmentGroup)

ENROLLMENT = AuditTargetType.ENROLLMENT
GROUP = AuditTargetType.ENROLLMENT_GROUP
REGISTRATION = AuditTargetType.REGISTRATION


def snapshot(model: Any) -> dict[str, Any] | None:
    """Return the JSON of a DPS model for an audit row (the writer redacts secrets)."""
    return model.to_json() if model is not None else None


def _audited(
    *,
    actor: Any,
    instance: Any,
    action: str,
    target_type: str,
    target_id: str,
    call: Callable[[], T],
    before: Any = None,
    after: Callable[[T], Any] | None = None,
    message: str = "",
) -> T:
    """Run one DPS call and record its outcome; re-raise a DPS error after recording it."""
    try:
        result = call()
    except DpsError as exc:
        if isinstance(exc, DpsForbidden):
            capabilities_invalidate(actor, instance)
        audit_record(
            actor=actor,
            action=action,
            outcome=AuditOutcome.DENIED if isinstance(exc, DpsForbidden) else AuditOutcome.FAILED,
            target_type=target_type,
            target_id=target_id,
            dps_instance=instance.name,
            before=before,
            dps_status=exc.status,
            dps_error_code=str(exc.error_code or ""),
            tracking_id=exc.tracking_id or "",
            message=(message + " " if message else "") + str(exc),
        )
        raise
    audit_record(
        actor=actor,
        action=action,
        outcome=AuditOutcome.SUCCESS,
        target_type=target_type,
        target_id=target_id,
        dps_instance=instance.name,
        before=before,
        after=after(result) if after else None,
        dps_status=200,
        message=message,
    )
    return result


def _require_etag(etag: str | None) -> str:
    # Never "If-Match: *": a change must not overwrite a version the user did not see, so an
    # edit without the etag seen is refused.
    etag = (etag or "").strip()
    if not etag or etag == "*":
        raise ValidationError("The page did not carry the record's version (ETag); reload it.")
    return etag


#
# Individual enrollments and enrollment groups: one code path, the differences in a table
#


@dataclass(frozen=True)
class RecordType:
    """What differs between individual enrollments and groups in a write: names only."""

    target_type: str
    create_action: str
    update_action: str
    delete_action: str
    put: str  # the DpsApi methods
    delete: str
    attestation: str


ENROLLMENTS = RecordType(
    target_type=ENROLLMENT,
    create_action=AuditAction.ENROLLMENT_CREATE,
    update_action=AuditAction.ENROLLMENT_UPDATE,
    delete_action=AuditAction.ENROLLMENT_DELETE,
    put="enrollment_put",
    delete="enrollment_delete",
    attestation="enrollment_attestation_mechanism",
)
GROUPS = RecordType(
    target_type=GROUP,
    create_action=AuditAction.ENROLLMENTGROUP_CREATE,
    update_action=AuditAction.ENROLLMENTGROUP_UPDATE,
    delete_action=AuditAction.ENROLLMENTGROUP_DELETE,
    put="group_put",
    delete="group_delete",
    attestation="group_attestation_mechanism",
)


def record_type(model: IndividualEnrollment | EnrollmentGroup) -> RecordType:
    """Return the :class:`RecordType` of an enrollment or a group."""
    return GROUPS if isinstance(model, EnrollmentGroup) else ENROLLMENTS


def record_create(*, actor: Any, instance: Any, client: DpsApi, model: M) -> M:
    """Create an enrollment or group (PUT without If-Match: DPS answers 409 if it exists)."""
    rt = record_type(model)
    return _audited(
        actor=actor,
        instance=instance,
        action=rt.create_action,
        target_type=rt.target_type,
        target_id=model.id,
        call=tracked(
            instance,
            rt.target_type,
            model.id,
            lambda: getattr(client, rt.put)(model),
            deleting=False,
        ),
        after=snapshot,
    )


def record_update(
    *, actor: Any, instance: Any, client: DpsApi, model: M, etag: str | None, before: M | None
) -> M:
    """Replace an enrollment or group only if its etag is still the one the user saw (else 412)."""
    if_match = _require_etag(etag)
    rt = record_type(model)
    return _audited(
        actor=actor,
        instance=instance,
        action=rt.update_action,
        target_type=rt.target_type,
        target_id=model.id,
        call=tracked(
            instance,
            rt.target_type,
            model.id,
            lambda: getattr(client, rt.put)(model, if_match=if_match),
            deleting=False,
        ),
        before=snapshot(before),
        after=snapshot,
    )


def record_delete(
    *,
    actor: Any,
    instance: Any,
    client: DpsApi,
    rt: RecordType,
    key: str,
    etag: str | None,
    before: Any = None,
) -> None:
    """Delete an enrollment or group only if its etag is still the one the user saw."""
    if_match = _require_etag(etag)
    _audited(
        actor=actor,
        instance=instance,
        action=rt.delete_action,
        target_type=rt.target_type,
        target_id=key,
        call=tracked(
            instance,
            rt.target_type,
            key,
            lambda: getattr(client, rt.delete)(key, if_match=if_match),
            deleting=True,
        ),
        before=snapshot(before),
    )


def attestation_for_edit(
    *, client: DpsApi, model: IndividualEnrollment | EnrollmentGroup
) -> AttestationMechanism:
    """Return the attestation an edit must send to keep it unchanged.

    GET masks symmetric keys, so they are read through the attestation-mechanism call and
    carried; TPM and CA references come back from GET as they are. Certificates never come
    back, so an X.509 certificate attestation cannot be kept without the user pasting it.
    """
    att = model.attestation
    if att.type == "symmetricKey":
        fetch: Callable[[str], AttestationMechanism] = getattr(
            client, record_type(model).attestation
        )
        return fetch(model.id)
    if (
        att.type == "x509"
        and att.x509
        and (att.x509.client_certificates or att.x509.signing_certificates)
    ):
        raise ValidationError(
            "DPS does not return certificates, so this change needs the certificate pasted again."
        )
    return att


def record_status_set(
    *, actor: Any, instance: Any, client: DpsApi, model: M, status: str, etag: str | None
) -> M:
    """Enable or disable an enrollment or group, carrying everything else (keys included)."""
    current = attestation_for_edit(client=client, model=model)
    return record_update(
        actor=actor,
        instance=instance,
        client=client,
        model=_with_status(model, status, current),
        etag=etag,
        before=model,
    )


def _with_status(model: M, status: str, attestation: AttestationMechanism) -> M:
    if status not in ("enabled", "disabled"):
        raise ValidationError("Provisioning status must be enabled or disabled.")
    changed = copy.deepcopy(model)
    changed.attestation = copy.deepcopy(attestation)
    changed.provisioning_status = status
    if isinstance(changed, IndividualEnrollment):
        changed.registration_state = None
    return changed


# The per-kind names of the calls other modules make.


def enrollment_create(*, enrollment: IndividualEnrollment, **kw: Any) -> IndividualEnrollment:
    """Create an individual enrollment."""
    return record_create(model=enrollment, **kw)


def enrollment_delete(*, registration_id: str, **kw: Any) -> None:
    """Delete an individual enrollment only if its etag is still the one the user saw."""
    record_delete(rt=ENROLLMENTS, key=registration_id, **kw)


def group_create(*, group: EnrollmentGroup, **kw: Any) -> EnrollmentGroup:
    """Create an enrollment group."""
    return record_create(model=group, **kw)


def group_delete(*, group_id: str, **kw: Any) -> None:
    """Delete an enrollment group only if its etag is still the one the user saw."""
    record_delete(rt=GROUPS, key=group_id, **kw)


#
# Keys
#


def attestation_reveal(
    *, actor: Any, instance: Any, client: DpsApi, target_type: str, target_id: str
) -> AttestationMechanism:
    """Read an enrollment's or group's attestation with its secrets, for the user to see."""
    rt = GROUPS if target_type == GROUP else ENROLLMENTS
    fetch: Callable[[str], AttestationMechanism] = getattr(client, rt.attestation)
    return _audited(
        actor=actor,
        instance=instance,
        action=AuditAction.ATTESTATION_REVEAL,
        target_type=target_type,
        target_id=target_id,
        call=lambda: fetch(target_id),
        after=lambda att: {"type": att.type, "revealed": "attestation material shown to the user"},
    )


@dataclass(frozen=True)
class DeviceKeys:
    """Device keys derived from a symmetric-key group's keys for one registration ID."""

    registration_id: str
    primary: str | None
    secondary: str | None


def device_key_compute(
    *, actor: Any, instance: Any, client: DpsApi, group_id: str, registration_id: str
) -> DeviceKeys:
    """Derive the device keys of ``registration_id`` from the group's keys (API.md §9)."""

    def call() -> DeviceKeys:
        att = client.group_attestation_mechanism(group_id)
        sym = att.symmetric_key
        if att.type != "symmetricKey" or sym is None:
            raise ValidationError("Device keys exist only for symmetric-key enrollment groups.")
        return DeviceKeys(
            registration_id=registration_id,
            primary=derive_device_key(sym.primary_key, registration_id)
            if sym.primary_key
            else None,
            secondary=(
                derive_device_key(sym.secondary_key, registration_id) if sym.secondary_key else None
            ),
        )

    return _audited(
        actor=actor,
        instance=instance,
        action=AuditAction.ATTESTATION_REVEAL,
        target_type=GROUP,
        target_id=group_id,
        call=call,
        after=lambda keys: {"derived_for": keys.registration_id},
        message=f"device key derived for {registration_id}",
    )


#
# Registration records
#


def registration_delete(
    *,
    actor: Any,
    instance: Any,
    client: DpsApi,
    registration_id: str,
    etag: str | None,
    before: Any = None,
) -> None:
    """Delete a device's registration record only if its etag is still the one seen."""
    if_match = _require_etag(etag)
    _audited(
        actor=actor,
        instance=instance,
        action=AuditAction.REGISTRATION_DELETE,
        target_type=REGISTRATION,
        target_id=registration_id,
        call=lambda: client.registration_delete(registration_id, if_match=if_match),
        before=snapshot(before),
    )
    registration_deleted(instance, registration_id)


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one item of a "delete selected"."""

    id: str
    ok: bool
    message: str = ""
    tracking_id: str = ""


def registrations_delete_selected(
    *, actor: Any, instance: Any, client: DpsApi, items: Sequence[tuple[str, str]]
) -> list[ItemResult]:
    """Delete each (registration id, etag) conditionally; report every item's outcome.

    One DPS call per record, each with the etag the user saw, so a record that changed
    since the list was shown is left alone (412) and reported.
    """
    results: list[ItemResult] = []
    for registration_id, etag in items:
        try:
            registration_delete(
                actor=actor,
                instance=instance,
                client=client,
                registration_id=registration_id,
                etag=etag,
            )
        except DpsError as exc:
            results.append(
                ItemResult(registration_id, False, exc.user_message, exc.tracking_id or "")
            )
            if isinstance(exc, DpsForbidden):
                break
        except ValidationError as exc:
            results.append(ItemResult(registration_id, False, " ".join(exc.messages)))
        else:
            results.append(ItemResult(registration_id, True, "Deleted."))
    return results
