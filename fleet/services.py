"""Write-through: every change the portal makes to DPS updates the index and the journal.

Called by the code paths that audit each write (enrollments/services.py for single writes,
the bulk runner's apply step for bulk calls). The journal (fleet/journal.py) is what keeps a
running pass from reporting the portal's own writes as "changed outside the portal".

Nothing here may break a write that DPS already applied: the index is a cache, and a pass
repairs it; so failures are logged, not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet import facets
from fleet.extract import RECORD_FIELDS, record_fields
from fleet.models import IndexedRecord, IndexedRegistration, PortalWrite, RecordKind

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The audit target types of enrollments/services.py, mapped to the index's kinds.
_KINDS = {"enrollment": RecordKind.ENROLLMENT, "enrollment_group": RecordKind.GROUP}


def kind_of(target: Any) -> str:
    """Return the index kind of a model, a document or an audit target type."""
    if isinstance(target, str):
        return _KINDS.get(target, target)
    if isinstance(target, dict):
        return RecordKind.GROUP if "enrollmentGroupId" in target else RecordKind.ENROLLMENT
    return RecordKind.GROUP if hasattr(target, "enrollment_group_id") else RecordKind.ENROLLMENT


_COUNTED = ("status", "attestation", "iot_edge", "tags")


def _counted(instance: Any, kind: str, key: str) -> dict[str, Any] | None:
    """Return the fields fleet.facets counts of a row, None when there is no row."""
    return (
        IndexedRecord.objects.filter(instance=instance, kind=kind, key=key)
        .values(*_COUNTED)
        .first()
    )


def record_writing(instance: Any, kind: str, record_id: str, *, deleting: bool = False) -> int:
    """Journal a write about to be sent to DPS; return the journal id to finish it with."""
    entry = PortalWrite.objects.create(
        instance=instance,
        kind=kind_of(kind),
        key=record_id.lower(),
        deleted=deleting,
        started_at=timezone.now(),
    )
    return int(entry.pk)


def _finish(journal: int | None, **fields: Any) -> None:
    if journal is not None:
        PortalWrite.objects.filter(pk=journal).update(finished_at=timezone.now(), **fields)


def record_written(instance: Any, model: Any, *, journal: int | None = None) -> None:
    """Store the record DPS returned for a portal write (create, update, status change)."""
    doc = model if isinstance(model, dict) else model.to_json()
    kind = kind_of(doc)
    fields = record_fields(kind, doc)
    key = fields["record_id"].lower()
    try:
        with transaction.atomic():
            if journal is None:
                journal = record_writing(instance, kind, key)
            _finish(journal, etag=fields["etag"])
            old = _counted(instance, kind, key)
            IndexedRecord.objects.update_or_create(
                instance=instance,
                kind=kind,
                key=key,
                defaults={**fields, "portal_written_at": timezone.now()},
            )
            facets.adjust(instance, kind, old, fields)
    except Exception:  # the write succeeded in DPS; the next pass repairs the index
        log.exception("fleet index: write-through of %s %s failed", kind, key)


def record_seen(instance: Any, model: Any) -> None:
    """Refresh a record's row from what a detail page just read live from DPS.

    A version the index does not know is kept as a change to judge at the end of the next
    pass (fleet/drift.py), exactly as if the pass had found it: the page must not hide a
    change made outside the portal by quietly taking it in.
    """
    from fleet.drift import snapshot  # drift imports audit; keep this module light

    doc = model if isinstance(model, dict) else model.to_json()
    kind = kind_of(doc)
    fields = record_fields(kind, doc)
    key = fields["record_id"].lower()
    try:
        with transaction.atomic():
            row = (
                IndexedRecord.objects.select_for_update()
                .filter(instance=instance, kind=kind, key=key)
                .first()
            )
            if row is None or not fields["etag"] or row.etag == fields["etag"]:
                return  # unknown records are the pass's to find; known versions need nothing
            pending = row.drift_pending or {"before": snapshot(row)}
            pending = {
                **pending,
                "etag": fields["etag"],
                "updated": doc.get("lastUpdatedDateTimeUtc"),
            }
            old = {f: getattr(row, f) for f in _COUNTED}
            for name, value in fields.items():
                setattr(row, name, value)
            row.drift_pending = pending
            row.save()
            facets.adjust(instance, kind, old, fields)
    except Exception:
        log.exception("fleet index: refreshing %s %s from a detail page failed", kind, key)


def record_deleted(instance: Any, kind: str, record_id: str, *, journal: int | None = None) -> None:
    """Remove a record the portal deleted in DPS (and its individual registration record)."""
    kind = kind_of(kind)
    key = record_id.lower()
    try:
        with transaction.atomic():
            if journal is None:
                journal = record_writing(instance, kind, key, deleting=True)
            _finish(journal, deleted=True)
            old = _counted(instance, kind, key)
            IndexedRecord.objects.filter(instance=instance, kind=kind, key=key).delete()
            facets.adjust(instance, kind, old, None)
            if kind == RecordKind.ENROLLMENT:
                IndexedRegistration.objects.filter(instance=instance, key=key).delete()
    except Exception:
        log.exception("fleet index: write-through of the deletion of %s %s failed", kind, key)


def record_write_failed(journal: int | None) -> None:
    """Close the journal entry of a write DPS refused (nothing changed in DPS)."""
    try:
        _finish(journal)
    except Exception:
        log.exception("fleet index: closing journal entry %s failed", journal)


def registration_deleted(instance: Any, registration_id: str) -> None:
    """Remove a registration record the portal deleted in DPS."""
    IndexedRegistration.objects.filter(instance=instance, key=registration_id.lower()).delete()
    IndexedRecord.objects.filter(
        instance=instance, kind=RecordKind.ENROLLMENT, key=registration_id.lower()
    ).update(registration_status="", registration_read_at=None)


def tracked(
    instance: Any, target_type: str, record_id: str, call: Callable[[], T], *, deleting: bool
) -> Callable[[], T]:
    """Wrap a single DPS write so the journal and the index follow it (enrollments/services.py)."""

    def run() -> T:
        try:
            journal: int | None = record_writing(
                instance, target_type, record_id, deleting=deleting
            )
        except Exception:  # the index must never stop a write; the next pass repairs it
            log.exception("fleet index: journaling a write of %s failed", record_id)
            journal = None
        try:
            result = call()
        except BaseException:
            record_write_failed(journal)
            raise
        if deleting:
            record_deleted(instance, target_type, record_id, journal=journal)
        elif result is not None:
            record_written(instance, result, journal=journal)
        else:
            record_write_failed(journal)
        return result

    return run


def record_bulk_applied(
    instance: Any, mode: str, items: Sequence[Any], failed_ids: set[str]
) -> None:
    """Follow one bulk call of individual enrollments that DPS answered (the bulk runner).

    DPS's bulk answer has no ETags, so each applied item is journaled as a bulk write whose
    window (the call's longest duration, up to now) identifies DPS's version of it; the row
    takes the item's fields at once, with an empty ETag that the next pass fills in.
    """
    try:
        now = timezone.now()
        started = now - timedelta(seconds=float(settings.HTTP_TIMEOUT_SECONDS) + 1)
        deleting = mode == "delete"
        failed = {f.lower() for f in failed_ids}
        docs = [i if isinstance(i, dict) else i.to_json() for i in items]
        docs = [d for d in docs if str(d.get("registrationId", "")).lower() not in failed]
        keys = [str(d.get("registrationId", "")).lower() for d in docs]
        with transaction.atomic():
            PortalWrite.objects.bulk_create(
                PortalWrite(
                    instance=instance,
                    kind=RecordKind.ENROLLMENT,
                    key=key,
                    deleted=deleting,
                    bulk=True,
                    started_at=started,
                    finished_at=now,
                )
                for key in keys
            )
            base = IndexedRecord.objects.filter(
                instance=instance, kind=RecordKind.ENROLLMENT, key__in=keys
            )
            tag_keys = facets.tag_keys_of(instance, RecordKind.ENROLLMENT)
            olds = {row["key"]: row for row in base.values("key", *_COUNTED)}
            if deleting:
                base.delete()
                for old in olds.values():
                    facets.adjust(instance, RecordKind.ENROLLMENT, old, None, tag_keys)
                return
            for doc in docs:
                fields = record_fields(RecordKind.ENROLLMENT, doc)
                fields = {k: v for k, v in fields.items() if k in RECORD_FIELDS}
                fields.update(etag="", portal_written_at=now)
                for unknown in ("created", "updated"):  # DPS stamps them; the pass reads them
                    if fields[unknown] is None:
                        del fields[unknown]
                key = fields["record_id"].lower()
                IndexedRecord.objects.update_or_create(
                    instance=instance, kind=RecordKind.ENROLLMENT, key=key, defaults=fields
                )
                facets.adjust(instance, RecordKind.ENROLLMENT, olds.get(key), fields, tag_keys)
    except Exception:
        log.exception("fleet index: write-through of a bulk %s call failed", mode)
