"""Failed sign-ins per client address: a few audited one by one, a flood counted and summarised.

Anyone can hit ``/auth/callback`` without a pending sign-in, and each failure used to be a
chained audit row written under the global chain-head lock: a cheap way to make every other
writer wait. Now, per client address and per window of ``AUDIT_SIGNIN_FAILED_WINDOW_SECONDS``,
the first ``AUDIT_SIGNIN_FAILED_BURST`` failures are written as before; further ones only
increment a counter (a row lock on that address's :class:`SigninFailureWindow`, never the
chain's), and once the window is over one ``signin_failed`` row says how many there were.
That summary is written at the address's next failure, at the next failure written from any
address, or at the next ``audit_retention`` run, whichever comes first: the log stays
complete in counts, only the detail of the surplus attempts (each one's time, request id and
message) is not kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, AuditOutcome, SigninFailureWindow
from audit.services import audit_record, client_ip_normalise
from portal.context import client_ip_var

# Ended windows summarised per flush, so one request never writes an unbounded batch.
FLUSH_BATCH = 100


def _window() -> timedelta:
    return timedelta(seconds=max(int(settings.AUDIT_SIGNIN_FAILED_WINDOW_SECONDS), 1))


def _burst() -> int:
    return max(int(settings.AUDIT_SIGNIN_FAILED_BURST), 1)


def _summarise(window: SigninFailureWindow) -> AuditEvent | None:
    """Write the summary row of an ended window, if it counted failures beyond the burst."""
    if not window.suppressed:
        return None
    seconds = int(_window().total_seconds())
    where = window.client_ip or "an unknown address"
    return audit_record(
        actor=None,
        action=AuditAction.SIGNIN_FAILED,
        outcome=AuditOutcome.FAILED,
        client_ip=window.client_ip,
        request_id="",  # written on behalf of earlier requests, not the current one
        message=(
            f"{window.suppressed} more failed sign-ins from {where} between "
            f"{window.started:%Y-%m-%d %H:%M:%S} and {window.last_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(over {_burst()} in {seconds} s: counted, not written one by one)"
        ),
        after={
            "summarised_failures": window.suppressed,
            "window_start": window.started.isoformat(),
            "last_failure": window.last_at.isoformat(),
            "window_seconds": seconds,
        },
    )


def audit_signin_failure(
    *, message: str, actor_oid: str = "", actor_upn: str = "", actor_name: str = ""
) -> AuditEvent | None:
    """Audit one failed sign-in from the current client address, or count it.

    Returns the row written, or None when the address is over its limit for this window
    and the failure was only counted (see the module docstring).
    """
    address = client_ip_normalise(client_ip_var.get()) or ""
    now = timezone.now()
    event: AuditEvent | None = None
    with transaction.atomic():
        window, _created = SigninFailureWindow.objects.select_for_update().get_or_create(
            client_ip=address, defaults={"started": now, "last_at": now}
        )
        if window.started <= now - _window():
            _summarise(window)
            window.started, window.written, window.suppressed = now, 0, 0
        window.last_at = now
        if window.written < _burst():
            window.written += 1
            window.save()
            event = audit_record(
                actor=None,
                action=AuditAction.SIGNIN_FAILED,
                outcome=AuditOutcome.FAILED,
                message=message,
                actor_oid=actor_oid,
                actor_upn=actor_upn,
                actor_name=actor_name,
            )
        else:
            window.suppressed += 1
            window.save(update_fields=["suppressed", "last_at"])
    if event is not None:
        # Piggyback on a write the chain takes anyway: summarise addresses that went quiet.
        audit_signin_failures_flush(now=now)
    return event


def audit_signin_failures_flush(*, now: datetime | None = None) -> int:
    """Summarise and drop ended windows (a batch of them); return the summaries written."""
    cutoff = (now or timezone.now()) - _window()
    written = 0
    with transaction.atomic():
        # skip_locked: a window some request holds right now is that request's to finish.
        ended = list(
            SigninFailureWindow.objects.select_for_update(skip_locked=True)
            .filter(started__lte=cutoff)
            .order_by("started")[:FLUSH_BATCH]
        )
        for window in ended:
            if _summarise(window) is not None:
                written += 1
            window.delete()
    return written
