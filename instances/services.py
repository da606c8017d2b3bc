"""Registering and changing DPS instances, each change audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.models import AuditAction, AuditOutcome, AuditTargetType
from audit.services import audit_record
from instances.hosts import DpsHostError, dps_host_register_check
from instances.models import DpsInstance


def dps_instance_upsert(
    *, actor: Any, name: str, host: str, resource_id: str, enabled: bool = True
) -> tuple[DpsInstance, bool]:
    """Register or update a DPS instance by name; audit what changed. Return (instance, created).

    Raises ``ValidationError`` (on ``host``) for a host a DPS token may not be sent to, and,
    when ``actor``'s ARM token is at hand, for a host ARM does not report for ``resource_id``.
    Switching an instance off never needs its host to pass: a refused one must be switchable.
    """
    current = DpsInstance.objects.filter(name=name).values_list("host", "resource_id").first()
    switch_off_only = not enabled and current == (host, resource_id)
    if not switch_off_only:
        try:
            dps_host_register_check(actor=actor, host=host, resource_id=resource_id)
        except DpsHostError as exc:
            raise ValidationError({"host": str(exc)}) from exc
    with transaction.atomic():
        instance = DpsInstance.objects.select_for_update().filter(name=name).first()
        before = instance.as_audit_dict() if instance else None
        created = instance is None
        if instance is None:
            instance = DpsInstance(name=name)
        instance.host, instance.resource_id, instance.enabled = host, resource_id, enabled
        unchanged = before is not None and (before["host"], before["resource_id"]) == (
            host,
            resource_id,
        )
        if enabled or not unchanged:
            instance.full_clean()
        after = instance.as_audit_dict()
        if before == after:
            return instance, False
        instance.save()
        audit_record(
            actor=actor,
            action=AuditAction.INSTANCE_CREATE if created else AuditAction.INSTANCE_UPDATE,
            outcome=AuditOutcome.SUCCESS,
            target_type=AuditTargetType.DPS_INSTANCE,
            target_id=instance.name,
            dps_instance=instance.name,
            before=before,
            after=after,
        )
    return instance, created
