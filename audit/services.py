"""The single writer of audit rows."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from audit.chain import event_hash, head_mac
from audit.keys import audit_current_key
from audit.models import AuditAction, AuditChainHead, AuditEvent, AuditOutcome, AuditTargetType
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


def client_ip_normalise(raw: str) -> str | None:
    """Return ``raw`` as a canonical IP address string, or None when it is not one."""
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
    client_ip: str | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Append one event to the audit chain and return it.

    ``actor`` is the user (or None for anonymous events such as a failed sign-in, where
    ``actor_oid``/``actor_upn``/``actor_name`` may describe who tried). Request id, task id
    and client IP come from the current request or task context unless ``client_ip`` or
    ``request_id`` say otherwise (a summary written on behalf of another address).
    ``before``, ``after`` and
    ``message`` go through :func:`audit.redaction.redact` first. Run inside the caller's
    transaction when there is one, so the event commits or rolls back with the change.
    """
    # The key first: a missing AUDIT_HMAC_KEYS fails here, before any lock is taken.
    key_id, _key = audit_current_key()
    known = _actor_snapshot(actor)
    snap = {"actor_oid": actor_oid, "actor_upn": actor_upn, "actor_name": actor_name, **known}
    rid = request_id_var.get() if request_id is None else request_id
    event = AuditEvent(
        time=timezone.now(),
        actor=actor if known else None,
        actor_oid=snap["actor_oid"][:64],
        actor_upn=snap["actor_upn"][:255],
        actor_name=snap["actor_name"][:255],
        client_ip=client_ip_normalise(client_ip_var.get() if client_ip is None else client_ip),
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
        key_id=key_id,
    )
    with transaction.atomic():
        head = _lock_head(AuditChainHead)
        _append(event, head, AuditChainHead)
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


def _lock_head(head_model: Any) -> Any:
    """Lock the chain head (row lock on PostgreSQL, the write lock on SQLite) and read it."""
    heads = head_model.objects
    if connections[heads.db].features.has_select_for_update:
        # SELECT ... FOR UPDATE locks and reads the row in one round trip (a create's audit
        # row is the page's largest database cost).
        head = heads.select_for_update().filter(pk=1).first()
        if head is None:
            heads.get_or_create(pk=1)
            head = heads.select_for_update().get(pk=1)
        return head
    # SQLite has no row locks: a write takes the database write lock before the read.
    if not heads.filter(pk=1).update(count=F("count")):
        heads.get_or_create(pk=1)
        heads.filter(pk=1).update(count=F("count"))
    return heads.get(pk=1)


def _append(event: Any, head: Any, head_model: Any) -> None:
    """Chain ``event`` onto the locked ``head``, save it and move the signed head to it."""
    event.prev_hash = head.last_hash
    event.hash = event_hash(event)
    event.save(force_insert=True)
    head_model.objects.filter(pk=1).update(
        last_hash=event.hash,
        count=F("count") + 1,
        key_id=event.key_id,
        mac=head_mac(event.hash, event.key_id),
    )


def audit_chain_seal(*, event_model: Any = None, head_model: Any = None) -> Any:
    """Append a keyed ``chain_keyed`` event after rows written before the chain was keyed.

    It pins those unkeyed rows (its HMAC covers their last hash), so audit_verify can accept
    them as a prefix; without it a run of unkeyed rows is indistinguishable from one forged
    without the key. Returns the event, or None when the newest row is keyed already (or
    there is none). The models are parameters so the migration can pass its historical ones.
    """
    event_model = event_model or AuditEvent
    head_model = head_model or AuditChainHead
    key_id, _key = audit_current_key()
    with transaction.atomic():
        head = _lock_head(head_model)
        newest = event_model.objects.order_by("-id").values_list("key_id", flat=True).first()
        if newest is None or newest:
            return None
        unkeyed = event_model.objects.filter(key_id="").count()
        seal = event_model(
            time=timezone.now(),
            action=AuditAction.CHAIN_KEYED.value,
            outcome=AuditOutcome.SUCCESS.value,
            target_type=AuditTargetType.AUDIT_LOG,
            target_id="hmac",
            after={"unkeyed_rows": unkeyed, "unkeyed_head": head.last_hash, "key_id": key_id},
            message=(
                f"audit chain keyed with HMAC-SHA256 (key id {key_id}); the {unkeyed} earlier "
                "events keep their SHA-256 hashes and are pinned by this one"
            ),
            key_id=key_id,
        )
        _append(seal, head, head_model)
    log.info("audit chain sealed: %d unkeyed events pinned by event %s", unkeyed, seal.pk)
    return seal
