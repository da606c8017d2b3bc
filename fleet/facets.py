"""Totals and facet counts from fleet.models.FacetCount instead of counting a million rows.

A list question whose filters are only status, attestation, IoT Edge and at most one tag
key = value (of a key with few enough values) is answered by summing a few hundred cells.
The cells are rebuilt from the index at the end of every pass (:func:`rebuild`, one GROUP BY)
and kept exact in between by :func:`adjust`, called wherever a row changes (write-through,
drift found by a pass).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from fleet.models import FacetCount, SyncState

#: A tag key with more distinct values than this is not counted here (lists count it live).
MAX_TAG_VALUES = 1000
Cell = tuple[str, str, str, str, bool]  # tag key, tag value, status, attestation, iot edge


def _text(value: Any) -> str:
    """Return a tag value as PostgreSQL's ``jsonb_each_text`` spells it."""
    return value if isinstance(value, str) else json.dumps(value)


def cells(row: Mapping[str, Any] | None, tag_keys: Iterable[str]) -> list[Cell]:
    """Return the cells a row (a dict of its fields) is counted in."""
    if row is None:
        return []
    base = (str(row.get("status") or ""), str(row.get("attestation") or ""))
    edge = bool(row.get("iot_edge"))
    out: list[Cell] = [("", "", *base, edge)]
    tags = row.get("tags") or {}
    for key in tag_keys:
        if key in tags:
            out.append((key, _text(tags[key])[:255], *base, edge))
    return out


def tag_keys_of(instance: Any, kind: str) -> list[str] | None:
    """Return the tag keys counted for ``kind``, or None while no count exists yet."""
    state = SyncState.objects.filter(instance=instance).only("facet_tags").first()
    if state is None or kind not in (state.facet_tags or {}):
        return None
    return list(state.facet_tags[kind])


def adjust(
    instance: Any,
    kind: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    tag_keys: list[str] | None = None,
) -> None:
    """Move one row's counts from its ``old`` fields to its ``new`` ones (None: no row)."""
    keys = tag_keys if tag_keys is not None else tag_keys_of(instance, kind)
    if keys is None:
        return  # nothing counted yet: the end of the first pass builds it
    delta: Counter[Cell] = Counter()
    for cell in cells(old, keys):
        delta[cell] -= 1
    for cell in cells(new, keys):
        delta[cell] += 1
    for (tag_key, tag_value, status, attestation, edge), d in delta.items():
        if not d:
            continue
        where = {
            "instance": instance,
            "kind": kind,
            "tag_key": tag_key,
            "tag_value": tag_value,
            "status": status,
            "attestation": attestation,
            "iot_edge": edge,
        }
        if FacetCount.objects.filter(**where).update(n=F("n") + d) or d < 0:
            continue
        try:
            with transaction.atomic():
                FacetCount.objects.create(**where, n=d)
        except IntegrityError:  # created meanwhile by another writer
            FacetCount.objects.filter(**where).update(n=F("n") + d)


_JSON_EACH = {
    "postgresql": "jsonb_each_text(r.tags) t",
    "sqlite": "json_each(r.tags) t",
}
_VALUE = {"postgresql": "left(t.value, 255)", "sqlite": "substr(CAST(t.value AS TEXT), 1, 255)"}


def rebuild(instance: Any, kind: str) -> list[str]:
    """Count ``kind``'s rows of ``instance`` afresh; return the tag keys now counted."""
    vendor = connection.vendor if connection.vendor in _JSON_EACH else "sqlite"
    each, value = _JSON_EACH[vendor], _VALUE[vendor]
    where = "r.instance_id = %s AND r.kind = %s"
    args = [instance.pk, kind]
    insert = (
        "INSERT INTO fleet_facetcount "
        "(instance_id, kind, tag_key, tag_value, status, attestation, iot_edge, n) "
    )
    with connection.cursor() as cur:
        cur.execute("DELETE FROM fleet_facetcount WHERE instance_id = %s AND kind = %s", args)
        cur.execute(
            insert + "SELECT r.instance_id, r.kind, '', '', r.status, r.attestation, "  # noqa: S608
            f"r.iot_edge, COUNT(*) FROM fleet_indexedrecord r WHERE {where} "
            "GROUP BY r.instance_id, r.kind, r.status, r.attestation, r.iot_edge",
            args,
        )
        # One pass over the tags: every (key, value, facets) cell into a scratch table; the
        # keys with few enough values are read from it, and their cells copied.
        cur.execute("DROP TABLE IF EXISTS fleet_tag_cells")
        cur.execute(
            "CREATE TEMP TABLE fleet_tag_cells AS "  # noqa: S608
            f"SELECT t.key AS key, {value} AS value, r.status AS status, "
            "r.attestation AS attestation, r.iot_edge AS iot_edge, COUNT(*) AS n "
            f"FROM fleet_indexedrecord r, {each} WHERE {where} "
            f"GROUP BY t.key, {value}, r.status, r.attestation, r.iot_edge",
            args,
        )
        cur.execute(
            "SELECT key FROM fleet_tag_cells GROUP BY key HAVING COUNT(DISTINCT value) <= %s",
            [MAX_TAG_VALUES],
        )
        keys = sorted(str(k) for (k,) in cur.fetchall())
        if keys:
            marks = ", ".join(["%s"] * len(keys))
            cur.execute(
                insert + "SELECT %s, %s, key, value, status, attestation, iot_edge, n "  # noqa: S608
                f"FROM fleet_tag_cells WHERE key IN ({marks})",
                [*args, *keys],
            )
        cur.execute("DROP TABLE fleet_tag_cells")
    state = SyncState.objects.get(instance=instance)
    SyncState.objects.filter(pk=state.pk).update(facet_tags={**state.facet_tags, kind: keys})
    return keys


FACETS = ("status", "attestation", "iot_edge")


def facet_key(value: Any) -> str:
    """Return a facet value as the lists spell it (IoT Edge: "true" / "false", as in the URL)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def tally(
    cells: Iterable[tuple[Mapping[str, str], int]], chosen: Mapping[str, str]
) -> tuple[int, dict[str, dict[str, int]]]:
    """Return the total and the disjunctive facets of ``cells`` under the ``chosen`` values.

    ``cells`` are (facet values, row count) pairs over rows no chosen facet filtered yet.
    The total counts the cells that match every chosen value; a facet counts the cells that
    match every chosen value but its own, so its other values still say how many rows they
    would give (a shopper's facets). A chosen value that matches nothing is shown with 0.
    """
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    total = 0
    for values, n in cells:
        misses = [name for name, want in chosen.items() if values[name] != want]
        if len(misses) > 1:
            continue
        if not misses:
            total += n
        for name in FACETS:
            if not misses or misses == [name]:
                facets[name][values[name]] = facets[name].get(values[name], 0) + n
    for name, want in chosen.items():
        facets[name].setdefault(want, 0)
    return total, facets


def chosen_values(status: str, attestation: str, iot_edge: bool | None) -> dict[str, str]:
    """Return the facet values a list filters on, keyed by facet (unset ones left out)."""
    values = {"status": status, "attestation": attestation}
    values["iot_edge"] = "" if iot_edge is None else facet_key(iot_edge)
    return {name: value for name, value in values.items() if value}


def counted(
    instance: Any,
    kind: str,
    *,
    status: str = "",
    attestation: str = "",
    iot_edge: bool | None = None,
    tag: tuple[str, str] | None = None,
) -> tuple[int, dict[str, dict[str, int]]] | None:
    """Return (total, disjunctive facets) from the counts, or None when they cannot answer."""
    keys = tag_keys_of(instance, kind)
    if keys is None or (tag is not None and tag[0] not in keys):
        return None
    # The cells of the tag (or of no tag), all of them: the facet values are chosen in Python,
    # so each facet can leave out its own choice. A few dozen cells at most.
    qs = FacetCount.objects.filter(
        instance=instance,
        kind=kind,
        tag_key=tag[0] if tag else "",
        tag_value=tag[1] if tag else "",
        n__gt=0,
    )
    cells = (
        ({"status": st, "attestation": att, "iot_edge": facet_key(edge)}, n)
        for st, att, edge, n in qs.values_list("status", "attestation", "iot_edge", "n")
    )
    return tally(cells, chosen_values(status, attestation, iot_edge))
