"""Tell the portal's own writes from changes made outside the portal.

The portal journals each write it makes (fleet.models.PortalWrite, written by
fleet/services.py): before the DPS call for single writes, after it for bulk calls. A pass asks
two questions of that journal:

- at page time, :func:`page_is_stale`: did the portal write this record while or after the
  page was read (or is a write in flight)? Then the page's copy is not newer than what the
  portal knows, and the pass leaves the row to the write-through;
- at the end of the pass, :func:`portal_made`: is this version (ETag, or a time inside a bulk
  call's window), or this disappearance, the portal's own? Judging at the end gives every
  write that was in flight while its page was read the time to be journaled.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from fleet.models import PortalWrite

#: A write journaled as started but never finished is in flight for this long (a worker that
#: died mid-call leaves such a row; after this, only its ETag or time window counts).
IN_FLIGHT = timedelta(minutes=10)
#: Clock difference allowed between the portal and DPS when matching a bulk call's window.
SKEW = timedelta(seconds=2)
#: Journal rows are kept this long after they finish (passes in between consult them).
KEEP = timedelta(days=2)


def writes_of(instance: Any, kind: str, keys: Iterable[str]) -> dict[str, list[PortalWrite]]:
    """Return the journaled writes of ``keys`` (lower-cased ids), grouped by key."""
    out: dict[str, list[PortalWrite]] = {}
    since = timezone.now() - KEEP
    for w in PortalWrite.objects.filter(
        instance=instance, kind=kind, key__in=list(keys), started_at__gte=since
    ):
        out.setdefault(w.key, []).append(w)
    return out


def page_is_stale(writes: list[PortalWrite], fetched_at: datetime) -> bool:
    """Return whether a portal write of the record is in flight or ended after ``fetched_at``."""
    now = timezone.now()
    for w in writes:
        if w.finished_at is None and w.started_at > now - IN_FLIGHT:
            return True
        if w.finished_at is not None and w.finished_at >= fetched_at:
            return True
    return False


def portal_made(
    writes: list[PortalWrite],
    *,
    etag: str | None = None,
    updated: datetime | None = None,
    vanished: bool = False,
) -> bool:
    """Return whether the version (``etag``/``updated``) or the disappearance is the portal's."""
    for w in writes:
        if vanished:
            if w.deleted:
                return True
            continue
        if w.deleted:
            continue
        if etag and w.etag and w.etag == etag:
            return True
        if w.bulk and updated is not None:
            end = w.finished_at or (w.started_at + IN_FLIGHT)
            if w.started_at - SKEW <= updated <= end + SKEW:
                return True
    return False


def prune(before: datetime) -> int:
    """Delete journal rows that finished before ``before``; return how many."""
    deleted, _ = PortalWrite.objects.filter(finished_at__lt=before).delete()
    return int(deleted)
