"""The fleet index: per DPS instance, what a list, a filter or a report needs; never a key.

Enrollments and enrollment groups share one table (:class:`IndexedRecord`, ``kind`` tells
them apart): they have the same fields, the pages filter and sort them the same way, and a
pass treats them alike, so one table means one set of indexes and one query path. Registration
records have other fields and live in :class:`IndexedRegistration`.

Nothing secret is stored: rows are built field by field from the DPS documents by
:mod:`fleet.extract`, which copies no attestation secret (symmetric keys, TPM keys, PEM).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RecordKind(models.TextChoices):
    ENROLLMENT = "enrollment", "Individual enrollment"
    GROUP = "group", "Enrollment group"


class IndexedRecord(models.Model):
    """One individual enrollment or enrollment group of one DPS instance, as last seen."""

    instance = models.ForeignKey(
        "instances.DpsInstance",
        on_delete=models.CASCADE,  # done by Django, which deletes the rows with the instance
        related_name="fleet_records",
        db_index=False,  # the unique constraint leads with it
        # No constraint in the database: checking one locks the instance's row for every row
        # written (SELECT … FOR KEY SHARE), a third of a first pass's cost. The index is
        # derived data, written only by code that holds the instance.
        db_constraint=False,
    )
    kind = models.CharField(max_length=16, choices=RecordKind.choices)
    # DPS ids ignore case: ``key`` (lower case) is unique, ``record_id`` keeps DPS's spelling.
    # On PostgreSQL its collation is "C" (migration 0007, set in SQL: SQLite has no "C"; an
    # AlterField of it would have to say COLLATE "C" again).
    key = models.CharField(max_length=128)
    record_id = models.CharField(max_length=128)
    device_id = models.CharField(max_length=128, blank=True)
    attestation = models.CharField(max_length=16, blank=True)
    x509_kind = models.CharField(max_length=24, blank=True)  # client / signing / caReferences
    status = models.CharField(max_length=16, blank=True)
    iot_hub_host_name = models.CharField(max_length=255, blank=True)
    iot_hubs = models.JSONField(default=list, blank=True)
    allocation_policy = models.CharField(max_length=16, blank=True)
    reprovision_update_hub = models.BooleanField(null=True)
    reprovision_migrate_data = models.BooleanField(null=True)
    iot_edge = models.BooleanField(default=False)
    tags = models.JSONField(default=dict, blank=True)
    desired = models.JSONField(default=dict, blank=True)
    etag = models.CharField(max_length=128, blank=True)
    created = models.DateTimeField(null=True)
    updated = models.DateTimeField(null=True)
    cert_subject = models.CharField(max_length=512, blank=True)
    cert_issuer = models.CharField(max_length=512, blank=True)
    primary_thumbprint = models.CharField(max_length=64, blank=True)
    secondary_thumbprint = models.CharField(max_length=64, blank=True)
    primary_not_after = models.DateTimeField(null=True)
    secondary_not_after = models.DateTimeField(null=True)
    # The earlier of the two: one indexed column answers "expires within N days".
    cert_not_after = models.DateTimeField(null=True)
    # Registration state of an individual enrollment (queries omit it; read by GET).
    registration_status = models.CharField(max_length=16, blank=True)
    registration_read_at = models.DateTimeField(null=True)
    # Bookkeeping of the sync: the pass that last saw the row, when the portal last wrote it,
    # and when a pass last found it changed outside the portal.
    seen_pass = models.BigIntegerField(default=0)
    portal_written_at = models.DateTimeField(null=True)
    drift_at = models.DateTimeField(null=True)
    # A change a pass found and has not yet judged: {"before": row snapshot, "etag", "updated"}.
    # Judged at the end of the pass, once every portal write in flight has been journaled.
    drift_pending = models.JSONField(null=True, blank=True)
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("instance", "kind", "key"), name="fleet_record_unique_key"
            )
        ]
        # Every index leads with (instance, kind): each query is one instance's one kind.
        # Fewer indexes is a faster pass (every row of a first pass pays for each one):
        # status/attestation/edge counts come from FacetCount, device id search from partial
        # indexes (migrations 0002, 0003). ``seen_pass`` has none: only the end of a pass asks
        # for it, and without it a later pass's "still there" update is a HOT update.
        indexes = [
            models.Index(
                fields=("instance", "kind", "status", "attestation"), name="fleet_rec_status"
            ),
            # Carries registration_read_at so a pass finds never-read rows, newest first,
            # from the index alone (PostgreSQL; SQLite has no INCLUDE and reads the rows).
            models.Index(
                fields=("instance", "kind", "updated"),
                name="fleet_rec_updated",
                include=("registration_read_at",),
            ),
            # Partial where most rows have nothing to find: only X.509 records have an expiry,
            # and most enrollments name no hub of their own.
            # Carries the facet fields: "expires within N days" counts its facets from the
            # index alone (PostgreSQL's index-only scan; SQLite reads the rows).
            models.Index(
                fields=("instance", "kind", "cert_not_after"),
                name="fleet_rec_expiry",
                condition=models.Q(cert_not_after__isnull=False),
                include=("status", "attestation", "iot_edge"),
            ),
            models.Index(
                fields=("instance", "kind", "iot_hub_host_name"),
                name="fleet_rec_hub",
                condition=~models.Q(iot_hub_host_name=""),
            ),
            models.Index(
                fields=("instance", "kind", "drift_at"),
                name="fleet_rec_drift",
                condition=models.Q(drift_at__isnull=False),
            ),
            models.Index(
                fields=("instance", "kind"),
                name="fleet_rec_pending",
                condition=models.Q(drift_pending__isnull=False),
            ),
            # Registration states read (the overview's counts, the oldest read first).
            models.Index(
                fields=("instance", "kind", "registration_read_at"),
                name="fleet_rec_regread",
                condition=models.Q(registration_read_at__isnull=False),
            ),
            # The id sort and id prefixes use the unique key's index: ``key`` is the lower-cased
            # id, in byte order ("C" collation on PostgreSQL, migration 0007; SQLite compares
            # bytes). One index where there were two: a first pass writes one entry less a row.
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.record_id}"


class IndexedRegistration(models.Model):
    """One device registration record: of a group's device, or of an individual enrollment."""

    instance = models.ForeignKey(
        "instances.DpsInstance",
        on_delete=models.CASCADE,
        related_name="fleet_registrations",
        db_index=False,  # the unique constraint leads with it
        db_constraint=False,  # as IndexedRecord.instance: a lock per row written
    )
    key = models.CharField(max_length=128)
    registration_id = models.CharField(max_length=128)
    group_key = models.CharField(max_length=128, blank=True)  # "" for an individual enrollment
    device_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, blank=True)
    substatus = models.CharField(max_length=32, blank=True)
    assigned_hub = models.CharField(max_length=255, blank=True)
    error_code = models.IntegerField(null=True)
    error_message = models.TextField(blank=True)
    etag = models.CharField(max_length=128, blank=True)
    created = models.DateTimeField(null=True)
    updated = models.DateTimeField(null=True)
    seen_pass = models.BigIntegerField(default=0)
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("instance", "key"), name="fleet_registration_unique")
        ]
        indexes = [
            models.Index(fields=("instance", "group_key", "status"), name="fleet_reg_group"),
            models.Index(fields=("instance", "group_key", "updated"), name="fleet_reg_updated"),
            models.Index(fields=("instance", "seen_pass"), name="fleet_reg_pass"),
        ]

    def __str__(self) -> str:
        return self.registration_id


class FacetCount(models.Model):
    """How many rows of one instance and kind share a status, attestation, IoT Edge flag and
    (optionally) one tag key = value: the totals and facets of the common list questions,
    read from a few hundred rows instead of counting a million (fleet/facets.py).

    Rebuilt at the end of every pass; write-through and drift adjust it in between. Tag keys
    with more than ``facets.MAX_TAG_VALUES`` distinct values are left out (counted live).
    """

    instance = models.ForeignKey(
        "instances.DpsInstance", on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=RecordKind.choices)
    status = models.CharField(max_length=16, blank=True)
    attestation = models.CharField(max_length=16, blank=True)
    iot_edge = models.BooleanField(default=False)
    tag_key = models.CharField(max_length=128, blank=True)  # "" = every row, whatever its tags
    tag_value = models.CharField(max_length=255, blank=True)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=(
                    "instance",
                    "kind",
                    "tag_key",
                    "tag_value",
                    "status",
                    "attestation",
                    "iot_edge",
                ),
                name="fleet_facet_cell",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}/{self.attestation}/{self.tag_key}={self.tag_value}: {self.n}"


class PortalWrite(models.Model):
    """A write the portal made to DPS, journaled so a pass never mistakes it for drift.

    ``record_writing`` adds the row before the DPS call (``finished_at`` empty: in flight);
    ``record_written``/``record_deleted`` finish it with the ETag DPS returned. A pass that
    finds a changed, new or vanished record first looks here (fleet/drift.py).
    """

    instance = models.ForeignKey(
        "instances.DpsInstance", on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=RecordKind.choices)
    key = models.CharField(max_length=128)
    # The ETag DPS returned; "" for a delete, a failed write or a bulk write (DPS's bulk answer
    # carries no ETags: a version DPS stamped between started_at and finished_at is ours).
    etag = models.CharField(max_length=128, blank=True)
    deleted = models.BooleanField(default=False)
    bulk = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=("instance", "kind", "key"), name="fleet_write_key"),
            models.Index(fields=("started_at",), name="fleet_write_started"),
        ]

    def __str__(self) -> str:
        return f"portal write of {self.kind} {self.key}"


class SeenPage(models.Model):
    """The keys one page of a later pass listed, so unchanged rows need no rewrite (fleet/seen.py).

    Written in the page's transaction, with the pass's position; forgotten when the pass ends.
    """

    instance = models.ForeignKey(
        "instances.DpsInstance", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=16, choices=RecordKind.choices)
    pass_id = models.BigIntegerField()
    keys = models.JSONField(default=list)  # lower-cased ids, as IndexedRecord.key

    class Meta:
        indexes = [models.Index(fields=("instance", "kind", "pass_id"), name="fleet_seen_pass")]

    def __str__(self) -> str:
        return f"{len(self.keys)} {self.kind} keys listed by pass {self.pass_id}"


class SyncPhase(models.TextChoices):
    IDLE = "idle", "Idle"
    ENROLLMENTS = "enrollments", "Individual enrollments"
    GROUPS = "groups", "Enrollment groups"
    REGISTRATIONS = "registrations", "Registration records of groups"
    STATES = "states", "Registration states of individual enrollments"
    FINISH = "finish", "Removing what DPS no longer holds"


class SyncState(models.Model):
    """Where the sync of one instance stands; a killed worker's successor resumes from here."""

    instance = models.OneToOneField(
        "instances.DpsInstance", on_delete=models.CASCADE, related_name="fleet_sync"
    )
    pass_id = models.BigIntegerField(default=0)
    phase = models.CharField(max_length=16, choices=SyncPhase.choices, default=SyncPhase.IDLE)
    continuation = models.TextField(blank=True)  # DPS token of the next page of the phase
    group_cursor = models.CharField(max_length=128, blank=True)  # group key being paged
    counts = models.JSONField(default=dict, blank=True)  # of the running or last pass
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)  # of the last complete pass
    last_error = models.TextField(blank=True)
    identity = models.CharField(max_length=255, blank=True)  # "app" or "user:<upn>"
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Per kind, the tag keys fleet.models.FacetCount counts (set when it is rebuilt; absent
    # until the first pass has ended, when lists count live).
    facet_tags = models.JSONField(default=dict, blank=True)
    lease_until = models.DateTimeField(null=True)
    lease_owner = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"sync of {self.instance_id}: pass {self.pass_id} {self.phase}"
