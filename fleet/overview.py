"""The overview of one DPS instance, read from the fleet index: counts, mixes, what needs attention.

Every number comes from the index (fleet.models), never from DPS: totals, status and attestation
of enrollments and groups from fleet.models.FacetCount where it has been built, the rest from
GROUP BY queries scoped to one instance (the leading column of every index).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from enrollments.models import ACTIVE_STATES, BulkJob, PauseReason
from fleet import facets
from fleet.models import IndexedRecord, IndexedRegistration, RecordKind, SyncState
from fleet.selectors import facet_counts

#: DPS's limits per instance (Azure IoT Hub DPS quotas and limits).
LIMIT_ENROLLMENTS = 1_000_000
LIMIT_REGISTRATIONS = 1_000_000
LIMIT_X509_GROUPS = 100
LIMIT_SYMMETRIC_GROUPS = 100
#: A gauge is drawn once a count reaches this share of its limit.
GAUGE_FROM = 0.5
#: Certificate buckets, in days: expired, then expiring within each.
EXPIRY_BUCKETS = (7, 30, 90)
DRIFT_DAYS = 7
TIMELINE_DAYS = 30
SAMPLE = 10
REGISTRATION_STATES = ("assigned", "assigning", "failed", "disabled", "unassigned")


@dataclass(frozen=True)
class Quota:
    """A count against one of DPS's limits."""

    name: str
    label: str
    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0

    @property
    def percent(self) -> float:
        return round(100 * self.share, 1)

    @property
    def near(self) -> bool:
        return self.share >= GAUGE_FROM


@dataclass(frozen=True)
class CertBucket:
    """Records whose earlier certificate expiry falls in one bucket."""

    kind: str
    label: str
    expired: bool
    within_days: int | None
    count: int


@dataclass
class Overview:
    """What the overview page and fleet_report show of one instance."""

    instance: Any
    synced_at: dt.datetime | None
    indexed: bool
    quotas: list[Quota]
    enrollment_attestation: dict[str, int]
    group_attestation: dict[str, int]
    provisioning: dict[str, int]
    registration_status: dict[str, int]
    hubs: dict[str, int]
    timeline: list[tuple[dt.date, int]]
    certificates: list[CertBucket]
    failed: list[IndexedRegistration]
    failed_count: int
    orphans: dict[str, int]
    never_registered: int
    never_registered_days: int
    drifted: int
    jobs_running: int
    jobs_need_signin: int
    ca_certificates: list[Any] = field(default_factory=list)

    @property
    def orphan_count(self) -> int:
        return sum(self.orphans.values())

    @property
    def expired_count(self) -> int:
        ca = sum(1 for c in self.ca_certificates if getattr(c, "expired", False))
        return ca + sum(b.count for b in self.certificates if b.expired)

    @property
    def attention_count(self) -> int:
        """Return how many items need attention: the home page's count (see Summary)."""
        certs = sum(b.count for b in self.certificates if b.expired or b.within_days == 30)
        return (
            certs
            + len(self.ca_certificates)
            + self.failed_count
            + self.orphan_count
            + self.never_registered
            + self.drifted
            + self.jobs_need_signin
        )


def _records(instance: Any, kind: str) -> QuerySet[IndexedRecord]:
    return IndexedRecord.objects.filter(instance=instance, kind=kind)


def _facets(instance: Any, kind: str) -> tuple[int, dict[str, dict[str, int]]]:
    """Return total and status/attestation facets of ``kind``: stored counts, else one GROUP BY."""
    counted = facets.counted(instance, kind)
    if counted is not None:
        return counted
    return facet_counts(_records(instance, kind))


def quotas(enrollments: int, groups: dict[str, int], registrations: int) -> list[Quota]:
    """Return the counts against DPS's limits."""
    return [
        Quota("enrollments", "Individual enrollments", enrollments, LIMIT_ENROLLMENTS),
        Quota("registrations", "Registration records", registrations, LIMIT_REGISTRATIONS),
        Quota("x509_groups", "X.509 enrollment groups", groups.get("x509", 0), LIMIT_X509_GROUPS),
        Quota(
            "symmetric_groups",
            "Symmetric-key enrollment groups",
            groups.get("symmetricKey", 0),
            LIMIT_SYMMETRIC_GROUPS,
        ),
    ]


def _grouped(qs: QuerySet[Any], column: str) -> dict[str, int]:
    rows = qs.order_by().values_list(column).annotate(n=Count("*"))
    return {str(value or ""): int(n) for value, n in sorted(rows, key=lambda r: -r[1])}


def _registered_ids(instance: Any) -> QuerySet[IndexedRegistration]:
    return IndexedRegistration.objects.filter(instance=instance, group_key="", key=OuterRef("key"))


def never_registered(
    instance: Any, *, older_than_days: int | None = None, now: dt.datetime | None = None
) -> QuerySet[IndexedRecord]:
    """Return individual enrollments whose state was read and that hold no registration record."""
    qs = _records(instance, RecordKind.ENROLLMENT).filter(registration_read_at__isnull=False)
    qs = qs.filter(~Exists(_registered_ids(instance)))
    if older_than_days is not None:
        qs = qs.filter(created__lt=(now or timezone.now()) - dt.timedelta(days=older_than_days))
    return qs


def registration_status(instance: Any) -> dict[str, int]:
    """Return registration records by status, and the enrollments never registered."""
    counts = _grouped(IndexedRegistration.objects.filter(instance=instance), "status")
    out = {s: counts.pop(s, 0) for s in REGISTRATION_STATES}
    out.update(counts)
    out["never registered"] = never_registered(instance).count()
    return out


def timeline(
    instance: Any, *, days: int = TIMELINE_DAYS, now: dt.datetime | None = None
) -> list[tuple[dt.date, int]]:
    """Return registration records created per day over the last ``days`` days (UTC)."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    since = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    rows = (
        IndexedRegistration.objects.filter(instance=instance, created__gte=since)
        .annotate(day=TruncDate("created", tzinfo=dt.UTC))
        .order_by()
        .values_list("day")
        .annotate(n=Count("*"))
    )
    per_day = {day: int(n) for day, n in rows}
    return [
        (d, per_day.get(d, 0))
        for d in (today - dt.timedelta(days=i) for i in range(days - 1, -1, -1))
    ]


def certificate_buckets(instance: Any, *, now: dt.datetime | None = None) -> list[CertBucket]:
    """Return, per record kind, how many have a certificate expired or expiring per bucket.

    A record counts by the earlier of its primary and secondary certificate (``cert_not_after``);
    buckets are cumulative ("within 30 days" includes "within 7 days") and include their last
    instant (a certificate ending in exactly 7 days is within 7 days); expired ones are apart.
    """
    now = now or timezone.now()
    out = []
    for kind, noun in ((RecordKind.ENROLLMENT, "client"), (RecordKind.GROUP, "group signing")):
        # Counting the indexed column itself lets PostgreSQL answer from the expiry index
        # alone (an index-only scan of the range up to the last bucket's end).
        at = "cert_not_after"
        aggregates = {"expired": Count(at, filter=Q(cert_not_after__lt=now))}
        for days in EXPIRY_BUCKETS:
            window = Q(cert_not_after__gte=now, cert_not_after__lte=now + dt.timedelta(days=days))
            aggregates[f"d{days}"] = Count(at, filter=window)
        horizon = now + dt.timedelta(days=max(EXPIRY_BUCKETS))
        got = _records(instance, kind).filter(cert_not_after__lte=horizon).aggregate(**aggregates)
        out.append(CertBucket(kind, f"{noun} certificates expired", True, None, got["expired"]))
        for days in EXPIRY_BUCKETS:
            label = f"{noun} certificates expiring within {days} days"
            out.append(CertBucket(kind, label, False, days, got[f"d{days}"]))
    return out


def orphans(instance: Any) -> dict[str, int]:
    """Return, per group that is gone from the index, how many registration records it left."""
    groups = _records(instance, RecordKind.GROUP).filter(key=OuterRef("group_key"))
    qs = IndexedRegistration.objects.filter(instance=instance).exclude(group_key="")
    return _grouped(qs.filter(~Exists(groups)), "group_key")


def orphan_records(instance: Any, group_key: str) -> QuerySet[IndexedRegistration]:
    """Return the registration records a vanished group left, if it is indeed gone."""
    if _records(instance, RecordKind.GROUP).filter(key=group_key.lower()).exists():
        return IndexedRegistration.objects.none()
    return IndexedRegistration.objects.filter(instance=instance, group_key=group_key.lower())


def drifted_records(instance: Any, *, now: dt.datetime) -> QuerySet[IndexedRecord]:
    """Return the records a pass found changed outside the portal in the last 7 days."""
    return IndexedRecord.objects.filter(
        instance=instance,
        kind__in=RecordKind.values,  # the drift index leads with (instance, kind)
        drift_at__gte=now - dt.timedelta(days=DRIFT_DAYS),
    )


def _jobs(instance: Any) -> tuple[int, int]:
    active = BulkJob.objects.filter(instance=instance, state__in=ACTIVE_STATES)
    need = active.filter(pause_reason=PauseReason.NEEDS_SIGNIN).count()
    return active.count(), need


def overview(instance: Any, *, now: dt.datetime | None = None) -> Overview:
    """Return the overview of ``instance`` from its index."""
    now = now or timezone.now()
    state = SyncState.objects.filter(instance=instance).only("finished_at").first()
    enrollments, e_facets = _facets(instance, RecordKind.ENROLLMENT)
    _groups, g_facets = _facets(instance, RecordKind.GROUP)
    registrations = IndexedRegistration.objects.filter(instance=instance)
    failed = registrations.filter(status="failed")
    days = settings.FLEET_NEVER_REGISTERED_DAYS
    running, need_signin = _jobs(instance)
    return Overview(
        instance=instance,
        synced_at=state.finished_at if state else None,
        indexed=bool(state and state.finished_at),
        quotas=quotas(enrollments, g_facets["attestation"], registrations.count()),
        enrollment_attestation=e_facets["attestation"],
        group_attestation=g_facets["attestation"],
        provisioning=e_facets["status"],
        registration_status=registration_status(instance),
        hubs=_grouped(registrations.exclude(assigned_hub=""), "assigned_hub"),
        timeline=timeline(instance, now=now),
        certificates=certificate_buckets(instance, now=now),
        failed=list(failed.order_by("-updated", "key")[:SAMPLE]),
        failed_count=failed.count(),
        orphans=orphans(instance),
        never_registered=never_registered(instance, older_than_days=days, now=now).count(),
        never_registered_days=days,
        drifted=drifted_records(instance, now=now).count(),
        jobs_running=running,
        jobs_need_signin=need_signin,
    )


@dataclass(frozen=True)
class Summary:
    """One line of the home page about one instance."""

    enrollments: int
    groups: int
    registrations: int
    expired: int
    expiring_30: int
    failed: int
    orphans: int
    never_registered: int
    drifted: int
    jobs_running: int
    synced_at: dt.datetime | None

    @property
    def attention(self) -> int:
        """Return how many items need attention (certificates expired or ending within 30 days)."""
        return (
            sum((self.expired, self.expiring_30, self.failed, self.orphans, self.never_registered))
            + self.drifted
        )

    @property
    def attention_items(self) -> list[str]:
        """Return the attention items in words, the worst first (those that are not zero)."""
        items = (
            (self.expired, "certificate expired", "certificates expired"),
            (
                self.expiring_30,
                "certificate expiring within 30 days",
                "certificates expiring within 30 days",
            ),
            (self.failed, "failed registration", "failed registrations"),
            (self.orphans, "orphaned registration record", "orphaned registration records"),
            (self.never_registered, "enrollment never registered", "enrollments never registered"),
            (self.drifted, "changed outside the portal", "changed outside the portal"),
        )
        return [f"{n:,} {one if n == 1 else many}" for n, one, many in items if n]


def summary(instance: Any, *, now: dt.datetime | None = None) -> Summary:
    """Return the home page's line of ``instance``: counts and the attention items."""
    now = now or timezone.now()
    state = SyncState.objects.filter(instance=instance).only("finished_at").first()
    certs = certificate_buckets(instance, now=now)
    registrations = IndexedRegistration.objects.filter(instance=instance)
    return Summary(
        enrollments=_facets(instance, RecordKind.ENROLLMENT)[0],
        groups=_facets(instance, RecordKind.GROUP)[0],
        registrations=registrations.count(),
        expired=sum(b.count for b in certs if b.expired),
        expiring_30=sum(b.count for b in certs if b.within_days == 30),
        failed=registrations.filter(status="failed").count(),
        orphans=sum(orphans(instance).values()),
        never_registered=never_registered(
            instance, older_than_days=settings.FLEET_NEVER_REGISTERED_DAYS, now=now
        ).count(),
        drifted=drifted_records(instance, now=now).count(),
        jobs_running=_jobs(instance)[0],
        synced_at=state.finished_at if state else None,
    )
