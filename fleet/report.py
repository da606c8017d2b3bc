"""What needs attention across instances, item by item, for ``manage.py fleet_report``.

Read from the fleet index only (no DPS or ARM call: a cron job has no signed-in user, so CA
certificates, which the control plane reads as the user, are not in it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from django.db.models import Q
from django.utils import timezone

from enrollments.models import ACTIVE_STATES, BulkJob, PauseReason
from fleet.models import IndexedRecord, IndexedRegistration, RecordKind
from fleet.overview import drifted_records, never_registered, orphans

_KIND_CERT: dict[str, str] = {RecordKind.ENROLLMENT: "client", RecordKind.GROUP: "signing"}


class ExitCode(IntEnum):
    """What ``fleet_report`` exits with (the worst finding wins; like a monitoring plugin)."""

    OK = 0  # nothing expired, nothing expiring within the window, nothing else to see
    ATTENTION = 1  # certificates expiring within the window, or other items needing attention
    EXPIRED = 2  # at least one certificate has expired
    ERROR = 3  # the report could not be made (unknown instance, bad --within)


@dataclass(frozen=True)
class Item:
    """One thing that needs attention."""

    instance: str
    item: str  # expired_certificate, expiring_certificate, failed_registration, …
    kind: str
    id: str
    detail: str
    at: str  # ISO 8601 time the item is about ("" if none)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


FIELDS = tuple(Item.__dataclass_fields__)


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""


def certificate_items(instance: Any, *, within: dt.timedelta, now: dt.datetime) -> Iterator[Item]:
    """Yield each primary and secondary certificate expired or expiring within ``within``."""
    horizon = now + within
    rows = (
        IndexedRecord.objects.filter(instance=instance, cert_not_after__lte=horizon)
        .order_by("cert_not_after", "kind", "key")
        .values_list("kind", "record_id", "primary_not_after", "secondary_not_after")
    )
    for kind, rid, primary, secondary in rows.iterator(chunk_size=2000):
        for which, end in (("primary", primary), ("secondary", secondary)):
            if end is None or end > horizon:
                continue
            expired = end < now
            yield Item(
                instance.name,
                "expired_certificate" if expired else "expiring_certificate",
                kind,
                rid,
                f"{which} {_KIND_CERT.get(str(kind), '')} certificate "
                + ("expired" if expired else "expires"),
                _iso(end),
            )


def registration_items(instance: Any, *, never_days: int, now: dt.datetime) -> Iterator[Item]:
    """Yield failed registrations, orphaned records by group, and long-unregistered enrollments."""
    failed = IndexedRegistration.objects.filter(instance=instance, status="failed").order_by("key")
    for r in failed.iterator(chunk_size=2000):
        error = f"{r.error_code}: {r.error_message}" if r.error_code else r.error_message
        yield Item(
            instance.name,
            "failed_registration",
            "registration",
            r.registration_id,
            error,
            _iso(r.updated),
        )
    for group, n in orphans(instance).items():
        yield Item(
            instance.name,
            "orphaned_registrations",
            "group",
            group,
            f"{n} registration record(s) of a group that is gone",
            "",
        )
    for rid, created in (
        never_registered(instance, older_than_days=never_days, now=now)
        .order_by("key")
        .values_list("record_id", "created")
    ):
        yield Item(
            instance.name,
            "never_registered",
            RecordKind.ENROLLMENT,
            rid,
            f"never registered for more than {never_days} days",
            _iso(created),
        )


def change_items(instance: Any, *, now: dt.datetime) -> Iterator[Item]:
    """Yield records changed outside the portal lately and jobs waiting for their owner."""
    changed = drifted_records(instance, now=now).order_by("-drift_at")
    for kind, rid, at in changed.values_list("kind", "record_id", "drift_at"):
        yield Item(
            instance.name,
            "changed_outside_portal",
            kind,
            rid,
            "changed outside the portal",
            _iso(at),
        )
    waiting = BulkJob.objects.filter(
        Q(instance=instance, state__in=ACTIVE_STATES, pause_reason=PauseReason.NEEDS_SIGNIN)
    ).order_by("created_at")
    for job in waiting:
        yield Item(
            instance.name,
            "job_needs_signin",
            "job",
            str(job.pk),
            f"{job.get_kind_display()} waits for its owner to sign in",
            _iso(job.created_at),
        )


def report(
    instances: Iterable[Any],
    *,
    within: dt.timedelta,
    never_days: int,
    now: dt.datetime | None = None,
) -> list[Item]:
    """Return every item needing attention of ``instances``, certificates first."""
    now = now or timezone.now()
    items: list[Item] = []
    for instance in instances:
        items.extend(certificate_items(instance, within=within, now=now))
        items.extend(registration_items(instance, never_days=never_days, now=now))
        items.extend(change_items(instance, now=now))
    return items


def exit_code(items: Iterable[Item]) -> ExitCode:
    """Return the exit code the items call for."""
    found = {i.item for i in items}
    if "expired_certificate" in found:
        return ExitCode.EXPIRED
    return ExitCode.ATTENTION if found else ExitCode.OK
