"""The single writer of audit rows."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.chain import event_hash
from audit.models import AuditAction, AuditChainHead, AuditEvent, AuditOutcome
from audit.redaction import redact, redact_text
from portal.context import client_ip_var, request_id_var, task_id_var

log = logging.getLogger(__name__)


def _actor_snapshot(actor: Any) -> dict[str, str]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return {}
    snap = {"actor_name": actor.get_full_name() or actor.get_username()}
    try:
        identity = actor.entra_identity
    except (ObjectDoesNotExist, AttributeError):
        identity = None
    if identity is not None:
        snap.update(
            actor_oid=identity.object_id,
            actor_upn=identity.upn,
            actor_name=identity.display_name or snap["actor_name"],
        )
    return snap


def _client_ip() -> str | None:
    raw = client_ip_var.get()
    try:
        return str(ipaddress.ip_address(raw)) if raw else None
    except ValueError:
        return None


def _json_clean(value: Any) -> Any:
    """Redact, then round-trip through JSON so the hash sees what the database returns."""
    if value is None:
        return None
    return json.loads(json.dumps(redact(value), default=str))


def audit_record(
    *,
    actor: Any,
    action: AuditAction | str,
    outcome: AuditOutcome | str,
    target_type: str = "",
    target_id: str = "",
    dps_instance: str = "",
    before: Any = None,
    after: Any = None,
    message: str = "",
    dps_status: int | None = None,
    dps_error_code: str = "",
    tracking_id: str = "",
    actor_oid: str = "",
    actor_upn: str = "",
    actor_name: str = "",
) -> AuditEvent:
    """Append one event to the audit chain and return it.

    ``actor`` is the user (or None for anonymous events such as a failed sign-in, where
    ``actor_oid``/``actor_upn``/``actor_name`` may describe who tried). Request id, task id
    and client IP come from the current request or task context. ``before``, ``after`` and
    ``message`` go through :func:`audit.redaction.redact` first. Run inside the caller's
    transaction when there is one, so the event commits or rolls back with the change.
    """
    known = _actor_snapshot(actor)
    snap = {"actor_oid": actor_oid, "actor_upn": actor_upn, "actor_name": actor_name, **known}
    rid = request_id_var.get()
    event = AuditEvent(
        time=timezone.now(),
        actor=actor if known else None,
        actor_oid=snap["actor_oid"][:64],
        actor_upn=snap["actor_upn"][:255],
        actor_name=snap["actor_name"][:255],
        client_ip=_client_ip(),
        request_id="" if rid == "-" else rid[:64],
        task_id=task_id_var.get()[:64],
        dps_instance=dps_instance[:128],
        action=str(action),
        target_type=target_type[:64],
        target_id=redact_text(str(target_id))[:255],
        outcome=str(outcome),
        dps_status=dps_status,
        dps_error_code=dps_error_code[:64],
        tracking_id=tracking_id[:128],
        before=_json_clean(before),
        after=_json_clean(after),
        message=redact_text(message),
    )
    with transaction.atomic():
        # Lock first (row lock on PostgreSQL, the write lock on SQLite), then read the head.
        updated = AuditChainHead.objects.filter(pk=1).update(count=F("count") + 1)
        if not updated:
            AuditChainHead.objects.get_or_create(pk=1)
            AuditChainHead.objects.filter(pk=1).update(count=F("count") + 1)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        event.prev_hash = head.last_hash
        event.hash = event_hash(event)
        event.save(force_insert=True)
        AuditChainHead.objects.filter(pk=1).update(last_hash=event.hash)
    log.info(
        "audit %s %s actor=%s target=%s:%s dps=%s",
        event.action,
        event.outcome,
        event.actor_upn or event.actor_oid or "-",
        event.target_type or "-",
        event.target_id or "-",
        event.dps_instance or "-",
    )
    return event
