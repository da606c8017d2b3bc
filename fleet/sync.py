"""One sync pass of one DPS instance: page every query into the index, judge drift, resume.

A pass runs through phases (fleet.models.SyncPhase): individual enrollments, enrollment groups,
each group's registration records, a budget of individual registration states, then the
finish (what DPS no longer holds, and the drift found on the way). After every page the rows
and the position (phase, group, continuation token) commit together, so a worker killed
mid-pass leaves a position its successor resumes from. One pass per instance at a time: a
lease on the SyncState row, renewed with every page, expires if its worker dies.
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from enrollments.dps.exceptions import DpsForbidden, DpsNotFound, DpsUnauthorized
from enrollments.ratelimit import TokenBucket
from fleet import access, drift, facets, seen
from fleet.extract import (
    RECORD_FIELDS,
    REGISTRATION_FIELDS,
    dps_time,
    record_fields,
    record_key,
    record_values,
    registration_fields,
)
from fleet.journal import page_is_stale, writes_of
from fleet.models import (
    IndexedRecord,
    IndexedRegistration,
    RecordKind,
    SyncPhase,
    SyncState,
)
from fleet.pacing import bucket_for_sync, paced_read
from fleet.upsert import insert_new, upsert_records
from instances.models import DpsInstance

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
#: The fields a page writes to an index row (besides instance, kind and key).
_UPDATE = (*RECORD_FIELDS, "seen_pass", "drift_pending", "drift_at")
_QUERY = {
    SyncPhase.ENROLLMENTS: ("/enrollments/query", RecordKind.ENROLLMENT, SyncPhase.GROUPS),
    SyncPhase.GROUPS: ("/enrollmentGroups/query", RecordKind.GROUP, SyncPhase.REGISTRATIONS),
}


def page_size() -> int:
    return int(getattr(settings, "FLEET_SYNC_PAGE_SIZE", 1000))


def state_budget() -> int:
    """Return how many individual registration states one pass reads (one GET each)."""
    return int(getattr(settings, "FLEET_SYNC_STATE_READS", 100))


class PassBusy(Exception):
    """Another worker holds the instance's pass."""


@dataclass
class Reader:
    """Make a pass's DPS calls as the app identity, falling back to the requesting user."""

    instance: DpsInstance
    state: SyncState
    bucket: TokenBucket
    app_client: Callable[[Any], Any] = access.app_client
    user_client: Callable[[Any, Any], Any] = access.user_client
    sleep: Callable[[float], None] | None = None
    ops: int = 0
    _client: Any = None
    _fell_back: bool = False

    def _start(self) -> None:
        if self.state.identity.startswith("user:") and self.state.requested_by is not None:
            self._use_user()
        else:
            self._client = self.app_client(self.instance)
            self.state.identity = access.APP_IDENTITY

    def _use_user(self) -> None:
        user = self.state.requested_by
        if user is None:
            raise access.NoReadIdentity(
                "The portal's app identity may not read this instance and nobody pressed "
                "Refresh: the index waits for a user who may read it."
            )
        self._client = self.user_client(user, self.instance)
        self.state.identity = access.identity_label(user)
        self._fell_back = True

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` paced; switch to the user once if DPS refuses the app."""
        if self._client is None:
            self._start()
        while True:
            try:
                self.ops += 1
                if self.sleep is not None:
                    return paced_read(self.bucket, lambda: fn(self._client), sleep=self.sleep)
                return paced_read(self.bucket, lambda: fn(self._client))
            except (DpsForbidden, DpsUnauthorized, access.NoReadIdentity):
                if self._fell_back:
                    raise
                log.info("fleet sync of %s: the app may not read it; as the user", self.instance)
                self._use_user()


@dataclass
class PassResult:
    """What one call of :func:`sync_instance` did (figures for logs and the bench)."""

    pass_id: int = 0
    finished: bool = False
    ops: int = 0
    pages: int = 0
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _take_lease(instance: DpsInstance) -> tuple[SyncState, str]:
    state, _ = SyncState.objects.get_or_create(instance=instance)
    owner = uuid.uuid4().hex
    now = timezone.now()
    taken = SyncState.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=state.pk
    ).update(lease_owner=owner, lease_until=now + LEASE)
    if not taken:
        raise PassBusy(instance.name)
    state.refresh_from_db()
    return state, owner


def _save(state: SyncState, owner: str, **fields: Any) -> None:
    """Store the position with the lease renewed (inside the page's transaction)."""
    for name, value in fields.items():
        setattr(state, name, value)
    state.lease_until = timezone.now() + LEASE
    updated = SyncState.objects.filter(pk=state.pk, lease_owner=owner).update(
        **{
            f.name: getattr(state, f.name)
            for f in SyncState._meta.concrete_fields
            if f.name not in ("id", "requested_by", "lease_owner", "facet_tags")
        }
    )
    if not updated:
        raise PassBusy(state.instance.name)


def _count(state: SyncState, name: str, n: int) -> None:
    state.counts = {**state.counts, name: int(state.counts.get(name, 0)) + n}


def _begin(state: SyncState, owner: str) -> None:
    seen.forget(state.instance_id, through=state.pass_id)  # none are left unless one was cut off
    _save(
        state,
        owner,
        pass_id=state.pass_id + 1,
        phase=SyncPhase.ENROLLMENTS,
        continuation="",
        group_cursor="",
        counts={"states_known": int(state.counts.get("states_known", 0))},  # until this ends
        started_at=timezone.now(),
        last_error="",
        identity="",  # each pass tries the app identity first: its role may have changed
    )


def _new_row(
    instance: DpsInstance,
    state: SyncState,
    kind: str,
    key: str,
    doc: dict[str, Any],
    row: IndexedRecord | None,
    judge: bool,
) -> dict[str, Any]:
    """Return the row a page's document replaces ``row`` with, marked for judging if due."""
    etag = doc.get("etag") or ""
    pending = row.drift_pending if row is not None else None
    if judge and pending is None:
        pending = {"before": drift.snapshot(row)}
    if pending is not None:
        pending = {**pending, "etag": etag, "updated": doc.get("lastUpdatedDateTimeUtc")}
    return {
        "instance_id": instance.pk,
        "kind": kind,
        "key": key,
        "seen_pass": state.pass_id,
        "drift_pending": pending,
        "drift_at": row.drift_at if row is not None else None,
        **record_fields(kind, doc),
    }


def _unchanged(instance: DpsInstance, kind: str, by_key: dict[str, dict[str, Any]]) -> set[str]:
    """Return the keys of the page whose ETag the index already holds (read only)."""
    etags = {k: doc["etag"] for k, doc in by_key.items() if isinstance(doc.get("etag"), str)}
    etags = {k: etag for k, etag in etags.items() if etag}
    if not etags:
        return set()
    if connection.vendor == "postgresql":  # one statement: a lookup per key, no rows read out
        with connection.cursor() as cur:
            cur.execute(
                "SELECT r.key FROM fleet_indexedrecord AS r "
                "JOIN unnest(%s::text[], %s::text[]) AS u(key, etag) "
                "ON r.key = u.key AND r.etag = u.etag "
                "WHERE r.instance_id = %s AND r.kind = %s",
                [list(etags), list(etags.values()), instance.pk, kind],
            )
            return {key for (key,) in cur.fetchall()}
    rows = IndexedRecord.objects.filter(instance=instance, kind=kind, key__in=list(etags))
    return {k for k, etag in rows.values_list("key", "etag") if etags.get(k) == etag}


def _note_listed(instance: DpsInstance, state: SyncState, kind: str, keys: list[str]) -> None:
    """Note that this pass listed ``keys``, so the finish keeps them, without rewriting rows."""
    if kind == RecordKind.GROUP:
        # Groups are few (DPS allows a hundred), and the registrations phase asks which
        # groups this pass listed by their rows' seen_pass.
        IndexedRecord.objects.filter(instance=instance, kind=kind, key__in=keys).update(
            seen_pass=state.pass_id
        )
    else:
        seen.remember(instance, state.pass_id, kind, keys)


def _new_rows(
    instance: DpsInstance, state: SyncState, kind: str, docs: list[dict[str, Any]], n: list[int]
) -> Iterator[tuple[Any, ...]]:
    """Yield, as fleet.upsert.insert_new takes them, the rows of a page of new keys.

    Counts them in ``n[0]``. Straight from record_values to the COPY: no dict per row.
    """
    tail = (state.pass_id, None, None)  # seen_pass, drift_pending, drift_at (_UPDATE's end)
    for doc in docs:
        key = record_key(kind, doc)
        if key:
            n[0] += 1
            yield (instance.pk, kind, key, *record_values(kind, doc), *tail)


def _counted_fields(row: IndexedRecord | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {f: getattr(row, f) for f in ("status", "attestation", "iot_edge", "tags")}


def apply_records(
    instance: DpsInstance,
    state: SyncState,
    kind: str,
    docs: list[dict[str, Any]],
    fetched_at: datetime,
) -> int:
    """Store one page of enrollments or groups; mark changes for judging; return the count."""
    judge = state.finished_at is not None  # the first pass fills the index: nothing is drift
    if not judge:
        # A first pass: the page's keys are new (a resumed pass starts after its last page).
        # Rows stream to the database as they are extracted; a key the portal wrote
        # meanwhile makes the whole page take the merge below instead.
        stored = [0]
        if insert_new(_new_rows(instance, state, kind, docs, stored), _UPDATE):
            return stored[0]
    by_key = {record_key(kind, doc): doc for doc in docs}
    by_key.pop("", None)
    # Most rows of a later pass are unchanged: the page's keys are noted as listed (one row
    # for the page), and unchanged rows are left alone. Whole rows are read only for the
    # changed ones, locked so that a write-through of the same record waits for this page.
    _note_listed(instance, state, kind, list(by_key))
    same = _unchanged(instance, kind, by_key)
    rest = [k for k in by_key if k not in same]
    known = (
        dict(
            IndexedRecord.objects.filter(instance=instance, kind=kind, key__in=rest).values_list(
                "key", "etag"
            )
        )
        if rest
        else {}
    )
    changed_keys = [k for k in rest if k in known]
    existing = (
        {
            r.key: r
            for r in IndexedRecord.objects.filter(
                instance=instance, kind=kind, key__in=changed_keys
            )
            .select_for_update()
            .only("id", "key", "etag", "drift_pending", "drift_at", *RECORD_FIELDS)
        }
        if changed_keys
        else {}
    )
    writes = writes_of(instance, kind, rest) if judge and rest else {}
    rows: list[dict[str, Any]] = []
    for key in rest:
        doc = by_key[key]
        row = existing.get(key)
        if judge and page_is_stale(writes.get(key, []), fetched_at):
            continue  # the portal wrote it after this page was read: its row is newer
        rows.append(_new_row(instance, state, kind, key, doc, row, judge))
    if judge and rows:
        tag_keys = facets.tag_keys_of(instance, kind)
        for new_row in rows:
            old = existing.get(new_row["key"])
            facets.adjust(instance, kind, _counted_fields(old), new_row, tag_keys)
    upsert_records(rows, _UPDATE, new_only=not known)
    return len(by_key)


def apply_registrations(
    instance: DpsInstance, state: SyncState, group_key: str, docs: list[dict[str, Any]]
) -> int:
    """Store one page of a group's registration records (mirrored: never drift)."""
    rows = []
    for doc in docs:
        rid = doc.get("registrationId")
        if isinstance(rid, str) and rid:
            rows.append(
                IndexedRegistration(
                    instance=instance,
                    key=rid.lower(),
                    seen_pass=state.pass_id,
                    **registration_fields(doc, group_key),
                )
            )
    if rows:
        IndexedRegistration.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=("instance", "key"),
            update_fields=(*REGISTRATION_FIELDS, "seen_pass"),
        )
    return len(rows)


@contextmanager
def _page_transaction() -> Iterator[None]:
    """Open the transaction of one page's rows and position, committed without waiting.

    A page commits without waiting for its WAL flush (PostgreSQL's ``synchronous_commit``
    off, for this transaction only): a database crash may lose the last pages committed, but
    rows and position go together, so the next run resumes from the position that survived.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _page(reader: Reader, path: str, token: str) -> tuple[Any, datetime]:
    fetched_at = timezone.now()
    page = reader.call(
        lambda c: access.query_raw(c, path, page_size=page_size(), continuation=token or None)
    )
    return page, fetched_at


def _run_query_phase(
    reader: Reader, state: SyncState, owner: str, result: PassResult, stop: Callable[[], bool]
) -> None:
    path, kind, next_phase = _QUERY[SyncPhase(state.phase)]
    while not stop():
        with _collector_paused():
            token = _query_page(reader, state, owner, result, path, kind, next_phase)
        if not token:
            return


def _query_page(
    reader: Reader,
    state: SyncState,
    owner: str,
    result: PassResult,
    path: str,
    kind: str,
    next_phase: str,
) -> str:
    """Read, store and account for one page of a query; return the next continuation token."""
    page, fetched_at = _page(reader, path, state.continuation)
    with _page_transaction():
        n = apply_records(reader.instance, state, kind, page.items, fetched_at)
        _count(state, kind, n)
        token: str = page.continuation_token or ""
        if token:
            _save(state, owner, continuation=token)
        else:
            _save(state, owner, continuation="", phase=next_phase)
    result.pages += 1
    result.records += n
    if state.finished_at is not None:
        _fresh_statistics(int(state.counts.get(kind, 0)))
    return token


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while one page is read and stored.

    A page of a thousand documents allocates a few hundred thousand objects that reference
    counting frees; with the collector on, each of its many runs during the page scans them
    all again (a quarter of a pass's own CPU). The collector resumes after the page.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_COUNTED_KINDS = (RecordKind.ENROLLMENT, RecordKind.GROUP)

#: Row counts after which a pass refreshes PostgreSQL's statistics of the index tables.
_ANALYZE_AT = (5_000, 50_000, 500_000)


def _fresh_statistics(done: int) -> None:
    """ANALYZE the index tables when a later pass has just grown them tenfold.

    A pass that adds many rows grows the table faster than autovacuum notices: with statistics
    that still say "a few rows", PostgreSQL looks a page's keys up by scanning the whole
    instance (any index on (instance, kind) looks as good), and the pass slows down as it
    grows. A first pass looks nothing up (its pages stream into COPY): it analyzes once, at
    its end (:func:`_finish`).
    """
    if connection.vendor != "postgresql" or done - page_size() >= max(_ANALYZE_AT):
        return
    if any(done - page_size() < mark <= done for mark in _ANALYZE_AT):
        _analyze_if_stale(done)


def _analyze_if_stale(rows: int) -> None:
    """ANALYZE the index table if its statistics know fewer than ``rows`` rows (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE oid = 'fleet_indexedrecord'::regclass")
        (known,) = cur.fetchone() or (0,)
        if known < rows:
            cur.execute("ANALYZE fleet_indexedrecord")


def _next_group(instance: DpsInstance, after: str, *, inclusive: bool) -> str | None:
    qs = IndexedRecord.objects.filter(instance=instance, kind=RecordKind.GROUP)
    qs = qs.filter(key__gte=after) if inclusive else qs.filter(key__gt=after)
    return qs.order_by("key").values_list("key", flat=True).first()


def _run_registrations_phase(
    reader: Reader, state: SyncState, owner: str, result: PassResult, stop: Callable[[], bool]
) -> None:
    group = _next_group(reader.instance, state.group_cursor, inclusive=bool(state.group_cursor))
    while group is not None and not stop():
        path = f"/registrations/{group}/query"
        try:
            page, _ = _page(reader, path, state.continuation if state.group_cursor == group else "")
        except DpsNotFound:  # the group went away meanwhile: the next pass sees it gone
            page = None
        with _page_transaction():
            n = apply_registrations(reader.instance, state, group, page.items if page else [])
            _count(state, "registrations", n)
            token = (page.continuation_token or "") if page else ""
            _save(state, owner, group_cursor=group, continuation=token)
        result.pages += 1
        result.records += n
        if not token:
            group = _next_group(reader.instance, group, inclusive=False)
            if group is not None:
                with transaction.atomic():
                    _save(state, owner, group_cursor=group, continuation="")
    if group is None:
        with transaction.atomic():
            _save(state, owner, phase=SyncPhase.STATES, group_cursor="", continuation="")


def _registration(registration_id: str, client: Any) -> dict[str, Any]:
    return access.registration_raw(client, registration_id)


def _groups_seen(instance: DpsInstance, state: SyncState) -> QuerySet[IndexedRecord]:
    """Return the group of an outer registration row, if this pass listed it."""
    return IndexedRecord.objects.filter(
        instance=instance,
        kind=RecordKind.GROUP,
        key=OuterRef("group_key"),
        seen_pass=state.pass_id,
    )


def _check_orphans(reader: Reader, state: SyncState) -> None:
    """Read a budget of orphaned registration records; drop those DPS no longer holds.

    A deleted group's records cannot be listed (its query answers 404), so each is read by id.
    """
    instance = reader.instance
    orphans = list(
        IndexedRegistration.objects.filter(instance=instance, seen_pass__lt=state.pass_id)
        .exclude(group_key="")
        .exclude(Exists(_groups_seen(instance, state)))
        .order_by("seen_pass")
        .values_list("id", "registration_id")[: state_budget()]
    )
    for pk, rid in orphans:
        try:
            reader.call(partial(_registration, rid))
        except DpsNotFound:
            IndexedRegistration.objects.filter(pk=pk).delete()
        else:
            IndexedRegistration.objects.filter(pk=pk).update(seen_pass=state.pass_id)


def _state_targets(instance: DpsInstance, budget: int) -> list[tuple[int, str]]:
    """Return the enrollments whose state a pass reads: never read (newest changed first), then
    the longest since read. Two index scans (fleet_rec_updated, fleet_rec_regread)."""
    enrollments = IndexedRecord.objects.filter(instance=instance, kind=RecordKind.ENROLLMENT)
    targets = list(
        enrollments.filter(registration_read_at__isnull=True)
        .order_by("-updated")
        .values_list("id", "record_id")[:budget]
    )
    if len(targets) < budget:
        targets += (
            enrollments.filter(registration_read_at__isnull=False)
            .order_by("registration_read_at", "-updated")
            .values_list("id", "record_id")[: budget - len(targets)]
        )
    return targets


def _run_states_phase(reader: Reader, state: SyncState, owner: str, result: PassResult) -> None:
    """Read a budget of individual registration states (the order: :func:`_state_targets`)."""
    instance = reader.instance
    for pk, rid in _state_targets(instance, state_budget()):
        try:
            doc: dict[str, Any] | None = reader.call(partial(_registration, rid))
        except DpsNotFound:
            doc = None
        with transaction.atomic():
            key = rid.lower()
            if doc is None:
                IndexedRegistration.objects.filter(instance=instance, key=key).delete()
            else:
                IndexedRegistration.objects.update_or_create(
                    instance=instance,
                    key=key,
                    defaults={**registration_fields(doc, ""), "seen_pass": state.pass_id},
                )
            IndexedRecord.objects.filter(pk=pk).update(
                registration_status=(doc or {}).get("status") or "unassigned",
                registration_read_at=timezone.now(),
            )
            _count(state, "states", 1)
            _save(state, owner)
    _check_orphans(reader, state)
    with transaction.atomic():
        _save(state, owner, phase=SyncPhase.FINISH)


def _finish(reader: Reader, state: SyncState, owner: str) -> None:
    instance = reader.instance
    started = state.started_at or timezone.now()
    if state.finished_at is None:  # a first pass: statistics for the lists and later passes
        _analyze_if_stale(sum(int(state.counts.get(k, 0)) for k in _COUNTED_KINDS))
    with transaction.atomic():
        drift.judge_pass(instance, state, started)
        seen.forget(instance.pk, through=state.pass_id)
        for kind in _COUNTED_KINDS:
            facets.rebuild(instance, kind)
        # Records of a group this pass paged but did not list are gone. Records of a group that
        # is gone stay: DPS keeps them (orphans, still counted against the quota) until deleted;
        # _check_orphans drops those DPS no longer holds.
        IndexedRegistration.objects.filter(instance=instance, seen_pass__lt=state.pass_id).exclude(
            group_key=""
        ).filter(Exists(_groups_seen(instance, state))).delete()
        # Individual registration records whose enrollment is gone.
        IndexedRegistration.objects.filter(instance=instance, group_key="").exclude(
            key__in=IndexedRecord.objects.filter(
                instance=instance, kind=RecordKind.ENROLLMENT
            ).values("key")
        ).delete()
        # How many individual enrollments have a registration state read (the pages say).
        state.counts["states_known"] = 0
        _count(
            state,
            "states_known",
            IndexedRecord.objects.filter(
                instance=instance,
                kind=RecordKind.ENROLLMENT,
                registration_read_at__isnull=False,
            ).count(),
        )
        _save(
            state,
            owner,
            phase=SyncPhase.IDLE,
            finished_at=timezone.now(),
            last_error="",
            lease_until=None,
        )
    drift.prune_journal(started)


def sync_instance(
    instance_id: int,
    *,
    reader_factory: Callable[..., Reader] = Reader,
    stop: Callable[[], bool] = lambda: False,
    bucket: TokenBucket | None = None,
) -> PassResult:
    """Run (or resume) the pass of one instance until it ends or ``stop()`` says so.

    Raises :class:`PassBusy` when another worker holds the pass. A DPS error that persists
    beyond the pacing's retries is stored as the state's ``last_error`` and re-raised; the
    position stays, so the next run resumes.
    """
    instance = DpsInstance.objects.get(pk=instance_id)
    state, owner = _take_lease(instance)
    result = PassResult()
    try:
        if state.phase == SyncPhase.IDLE:
            with transaction.atomic():
                _begin(state, owner)
        reader = reader_factory(
            instance=instance, state=state, bucket=bucket or bucket_for_sync(instance.name)
        )
        while state.phase in _QUERY and not stop():
            _run_query_phase(reader, state, owner, result, stop)
        if state.phase == SyncPhase.REGISTRATIONS and not stop():
            _run_registrations_phase(reader, state, owner, result, stop)
        if state.phase == SyncPhase.STATES and not stop():
            _run_states_phase(reader, state, owner, result)
        if state.phase == SyncPhase.FINISH and not stop():
            _finish(reader, state, owner)
            result.finished = True
        result.ops = reader.ops
    except Exception as exc:
        SyncState.objects.filter(pk=state.pk, lease_owner=owner).update(
            last_error=str(exc)[:2000], lease_until=None
        )
        raise
    else:
        SyncState.objects.filter(pk=state.pk, lease_owner=owner).update(lease_until=None)
    result.pass_id = state.pass_id
    result.counts = dict(state.counts)
    return result


def sync_position(instance: DpsInstance) -> SyncState | None:
    """Return the instance's SyncState, if it was ever synced."""
    return SyncState.objects.filter(instance=instance).first()


__all__ = ["PassBusy", "PassResult", "Reader", "dps_time", "sync_instance", "sync_position"]
