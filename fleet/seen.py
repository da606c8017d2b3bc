"""Remember which keys a later pass listed, without rewriting the rows that did not change.

A pass must know, at its end, which index rows DPS no longer holds: those it never saw. Rows
a pass writes (new or changed) carry its number (``seen_pass``). Most rows of a later pass
are unchanged, and marking each of them seen rewrote a million rows every 15 minutes: a
row version, a dirty page and, after each checkpoint, a full-page image in the WAL apiece,
for nothing. Instead each page of a later pass stores one :class:`~fleet.models.SeenPage`,
the list of keys it held, in the same transaction as the pass's position (a resumed pass
keeps them); the finish looks for rows in neither (:func:`unseen`) and then forgets the pages.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from fleet.models import IndexedRecord, SeenPage
from instances.models import DpsInstance

# PostgreSQL: an anti-join (hashed) of the instance's rows against the pass's listed keys. A
# NOT IN over the same subquery is hashed only while the planner thinks the keys fit in
# work_mem; past that it rescans the keys for every row.
_UNSEEN_PG = (
    "SELECT r.id FROM fleet_indexedrecord AS r "
    "WHERE r.instance_id = %s AND r.kind = %s AND r.seen_pass < %s AND NOT EXISTS ("
    " SELECT 1 FROM fleet_seenpage AS p"
    " CROSS JOIN LATERAL jsonb_array_elements_text(p.keys) AS s(key)"
    " WHERE p.instance_id = %s AND p.kind = %s AND p.pass_id = %s AND s.key = r.key)"
)
# Elsewhere (SQLite) an IN over the listed keys, which SQLite materializes once, indexed.
_LISTED = (
    "SELECT j.value FROM fleet_seenpage AS p, json_each(p.keys) AS j "
    "WHERE p.instance_id = %s AND p.kind = %s AND p.pass_id = %s"
)


def remember(instance: DpsInstance, pass_id: int, kind: str, keys: Iterable[str]) -> None:
    """Store the keys one page of pass ``pass_id`` listed (call in the page's transaction)."""
    listed = sorted(keys)
    if listed:
        SeenPage.objects.create(instance=instance, pass_id=pass_id, kind=kind, keys=listed)


def unseen(instance: DpsInstance, pass_id: int, kind: str) -> QuerySet[IndexedRecord]:
    """Return the rows of ``kind`` that pass ``pass_id`` neither wrote nor listed."""
    rows = IndexedRecord.objects.filter(instance=instance, kind=kind)
    if connection.vendor == "postgresql":
        params = [instance.pk, kind, pass_id, instance.pk, kind, pass_id]
        return rows.filter(pk__in=RawSQL(_UNSEEN_PG, params))  # noqa: S611 - constant SQL
    listed = RawSQL(_LISTED, [instance.pk, kind, pass_id])  # noqa: S611 - constant SQL
    return rows.filter(seen_pass__lt=pass_id).exclude(key__in=listed)


def forget(instance_id: int, *, through: int) -> None:
    """Drop the listed keys of the instance's passes up to ``through`` (a pass has ended)."""
    SeenPage.objects.filter(instance_id=instance_id, pass_id__lte=through).delete()
