"""Apply a confirmed job's rows to DPS in bulk calls of at most ten, exactly once.

Per chunk: claim up to ten rows of one plan with a lease (several workers may run one job),
mark them ``sending`` and count the attempt (committed), take a token from the shared bucket,
make the bulk call, then store every row's outcome and the job's counters in one transaction.

A row found ``sending`` with an expired lease was in flight when a worker died or a call timed
out: DPS may or may not have applied it. Such a row is checked with a GET first: if DPS already
holds what the row asks for it is done; if DPS still holds the version the preview saw it is
sent again; otherwise it is a conflict. Updates go with ``updateIfMatchETag`` and the preview's
etag, so a record changed by someone else is never overwritten.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from enrollments.bulk.access import access
from enrollments.bulk.calls import backoff, paced
from enrollments.bulk.permissions import GROUP, job_record_kind
from enrollments.bulk.status import LeaseLost as StatusLeaseLost
from enrollments.bulk.status import group_delete_apply, held_capabilities, status_apply
from enrollments.csv.diff import row_diff
from enrollments.csv.export import enrollment_to_row
from enrollments.csv.parse import dps_payload
from enrollments.dps.exceptions import (
    DpsError,
    DpsForbidden,
    DpsNotFound,
    DpsThrottled,
    DpsUnauthorized,
    DpsUnavailable,
    item_error_text,
)
from enrollments.dps.types import BulkEnrollmentOperationResult, DpsApi, IndividualEnrollment
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus
from enrollments.ratelimit import TokenBucket
from fleet.services import record_bulk_applied

log = logging.getLogger(__name__)

CHUNK = 10
LEASE_SECONDS = 120
MAX_ATTEMPTS = 8
_MODE = {RowPlan.CREATE: "create", RowPlan.UPDATE: "updateIfMatchETag", RowPlan.DELETE: "delete"}
_COUNTER = {
    RowStatus.DONE: "count_done",
    RowStatus.FAILED: "count_failed",
    RowStatus.CONFLICT: "count_conflict",
    RowStatus.SKIPPED: "count_skipped",
}


class _LeaseLost(Exception):
    """The row's lease ran out and another worker claimed it."""


def _claimable(job: BulkJob) -> Any:
    now = timezone.now()
    return BulkRow.objects.filter(
        job=job,
        # Implied by the Q below, but spelled out so PostgreSQL uses the open-rows index.
        status__in=(RowStatus.PENDING, RowStatus.SENDING),
        plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE),
    ).filter(
        Q(status=RowStatus.PENDING, lease="")
        | Q(status__in=(RowStatus.PENDING, RowStatus.SENDING), lease_until__lt=now)
    )


def claim(job: BulkJob, lease: str, *, size: int = CHUNK, after: int = 0) -> list[BulkRow]:
    """Lease up to ``size`` rows of one plan after id ``after``; return the rows now owned.

    The plan is the first open row's; rows of other plans stay for later claims, so a file
    that mixes operations still goes out in full bulk calls of one mode. ``FOR UPDATE SKIP
    LOCKED`` lets workers claim side by side: each passes over the rows another is claiming
    instead of waiting for them and then finding them gone (which made a second worker
    conclude that nothing was left and leave the job to the first). Rows are read in id
    order through the partial index of rows to send, so a claim costs the same at the first
    row and the millionth.
    """
    seconds = int(getattr(settings, "BULK_LEASE_SECONDS", LEASE_SECONDS))
    for attempt in range(50):
        first = (
            _claimable(job).filter(id__gt=after).order_by("id").values_list("plan", flat=True)
        ).first()
        if first is None:
            return []
        with transaction.atomic():
            ids = list(
                _claimable(job)
                .filter(id__gt=after, plan=first)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:size]
            )
            if ids:
                until = timezone.now() + timedelta(seconds=seconds)
                # The repeated filter keeps the update to rows still claimable (databases
                # without row locks, such as SQLite, serialise writers instead).
                _claimable(job).filter(id__in=ids).update(lease=lease, lease_until=until)
        if ids:
            return list(BulkRow.objects.filter(id__in=ids, lease=lease).order_by("id"))
        # Every row of that plan left is being claimed by another worker this instant.
        time.sleep(0.01 * (attempt + 1))
    return []


def _finish_rows(job: BulkJob, outcomes: list[tuple[BulkRow, str, str, str]]) -> None:
    """Store ``(row, status, error_code, message)`` outcomes and the job counters atomically.

    Rows with the same outcome (usually the whole chunk: done) are written by one UPDATE.
    """
    now = timezone.now()
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for row, status, code, message in outcomes:
        groups.setdefault((row.lease, status, code[:32], message[:2000]), []).append(row.id)
    counters: dict[str, int] = {}
    with transaction.atomic():
        for (lease, status, code, message), ids in groups.items():
            updated = BulkRow.objects.filter(id__in=ids, lease=lease).update(
                status=status,
                error_code=code,
                message=message,
                finished_at=now,
                lease="",
                lease_until=None,
            )
            if updated:
                counter = _COUNTER[RowStatus(status)]
                counters[counter] = counters.get(counter, 0) + updated
        if counters:
            total = sum(counters.values())
            BulkJob.objects.filter(id=job.id).update(
                progress_done=F("progress_done") + total,
                heartbeat_at=now,
                **{k: F(k) + n for k, n in counters.items()},
            )


#: The reason on an import's delete rows when DPS refuses deletes (403) to the job's owner.
DELETE_FORBIDDEN = (
    "Not deleted: DPS refused the deletion (403): your role on this DPS instance lacks the "
    "delete permission (enrollments.delete). Ask for it and import the delete rows again."
)


def fail_pending_deletes(job: BulkJob, message: str) -> int:
    """Fail every unclaimed pending delete row of ``job`` with ``message``; return how many.

    An import whose owner may write but not delete still applies its other rows: only the
    deletes fail, each with the reason, instead of the whole job failing on DPS's 403.
    """
    with transaction.atomic():
        n = BulkRow.objects.filter(
            job=job, plan=RowPlan.DELETE, status=RowStatus.PENDING, lease=""
        ).update(
            status=RowStatus.FAILED,
            error_code="403",
            message=message[:2000],
            finished_at=timezone.now(),
        )
        if n:
            BulkJob.objects.filter(pk=job.pk).update(
                count_failed=F("count_failed") + n,
                progress_done=F("progress_done") + n,
                heartbeat_at=timezone.now(),
            )
    return n


def _release(rows: list[BulkRow], *, in_doubt: bool, throttled: bool = False) -> None:
    """Give claimed rows back: in doubt (DPS may have applied them) or pending again.

    A 429 means DPS did nothing, so its attempt is given back too: throttling alone must
    never make a row fail for "repeated attempts".
    """
    extra = {"attempts": F("attempts") - 1} if throttled else {}
    BulkRow.objects.filter(id__in=[r.id for r in rows], lease__in={r.lease for r in rows}).update(
        status=RowStatus.SENDING if in_doubt else RowStatus.PENDING,
        lease="",
        lease_until=timezone.now() - timedelta(seconds=1) if in_doubt else None,
        **extra,
    )


def _mark_sending(rows: list[BulkRow]) -> set[int]:
    """Mark the rows still leased to their claimer as sent (an attempt) and renew the lease.

    Return the ids marked. A row whose lease ran out while its claimer waited for a turn may
    have been claimed by another worker; that worker sends it, this one must not.
    """
    seconds = int(getattr(settings, "BULK_LEASE_SECONDS", LEASE_SECONDS))
    with transaction.atomic():
        owned = set(
            BulkRow.objects.select_for_update()
            .filter(id__in=[r.id for r in rows], lease__in={r.lease for r in rows})
            .values_list("id", flat=True)
        )
        if owned:
            BulkRow.objects.filter(id__in=owned).update(
                status=RowStatus.SENDING,
                attempts=F("attempts") + 1,
                lease_until=timezone.now() + timedelta(seconds=seconds),
            )
    return owned


def _desired(row: BulkRow) -> dict[str, Any]:
    return json.loads(row.payload)


def _resolve_in_doubt(
    row: BulkRow, client: DpsApi, bucket: TokenBucket
) -> tuple[str, str, str] | None:
    """Decide a row a previous attempt may have applied; None means "send it"."""
    try:
        current = paced(bucket, lambda: client.enrollment_get(row.registration_id)).to_json()
    except DpsNotFound:
        current = None
    if row.plan == RowPlan.DELETE:
        if current is None:
            return RowStatus.DONE, "", "Deleted (confirmed after an interrupted attempt)."
        if not row.etag or current.get("etag") == row.etag:
            return None
        return RowStatus.CONFLICT, "412", "The enrollment changed in DPS since the preview."
    if row.plan == RowPlan.CREATE and current is None:
        return None
    if row.plan == RowPlan.UPDATE and current is not None and current.get("etag") == row.etag:
        return None
    if current is not None and not row_diff(
        enrollment_to_row(current), enrollment_to_row(_desired(row))
    ):
        return RowStatus.DONE, "", "Applied (confirmed after an interrupted attempt)."
    if row.plan == RowPlan.UPDATE and current is None:
        return RowStatus.CONFLICT, "404", "The enrollment was deleted in DPS since the preview."
    return RowStatus.CONFLICT, "412", "The enrollment changed in DPS since the preview."


def _item(row: BulkRow, client: DpsApi, bucket: TokenBucket) -> IndividualEnrollment:
    body = dps_payload(_desired(row))
    if row.plan == RowPlan.UPDATE:
        att = body.get("attestation") or {}
        if att.get("type") == "symmetricKey" and not att.get("symmetricKey"):
            # Blank keys in the file mean "keep them": carry the current keys (issue 5).
            mech = paced(
                bucket, lambda: client.enrollment_attestation_mechanism(row.registration_id)
            )
            att["symmetricKey"] = mech.to_json().get("symmetricKey") or {}
        body["etag"] = row.etag
    elif row.plan == RowPlan.DELETE and row.etag:
        body["etag"] = row.etag
    return IndividualEnrollment.from_json(body)


def _error_status(plan: str, code: int | None) -> str:
    if code is None:
        return RowStatus.FAILED
    family = code // 1000 if code >= 1000 else code
    if family == 412 or (family == 409 and plan == RowPlan.CREATE):
        return RowStatus.CONFLICT
    if family == 404 and plan != RowPlan.CREATE:
        return RowStatus.CONFLICT
    return RowStatus.FAILED


def run_chunk(
    job: BulkJob,
    rows: list[BulkRow],
    client: DpsApi,
    bucket: TokenBucket,
    *,
    sleep: Callable[[float], None] = time.sleep,
    caps: frozenset[str] | None = None,
) -> None:
    """Apply one claimed chunk and store its outcomes; raise what must stop the job upward.

    ``caps``: the owner's capabilities as read when the run started (a status job checks
    each record against them); read again here when not given.
    """
    if job.kind == JobKind.SET_STATUS or job_record_kind(job) == GROUP:
        _run_status_changes(job, rows, client, bucket, sleep, caps)
        return
    to_send = _settle_unsent(job, rows, client, bucket)
    if not to_send:
        return
    if job.kind == JobKind.DELETE_REGISTRATIONS:
        _run_registration_deletes(job, to_send, client, bucket)
        return
    items = {row.id: _item(row, client, bucket) for row in to_send}
    bucket.acquire()
    # The turn may come long after the claim (a 429 holds every worker for Retry-After, and
    # reading keys above is paced too): send only rows whose lease is still this caller's.
    owned = _mark_sending(to_send)
    to_send = [row for row in to_send if row.id in owned]
    if not to_send:
        return
    mode = _MODE[RowPlan(to_send[0].plan)]
    try:
        result = client.enrollment_bulk(mode, [items[row.id] for row in to_send])
    except DpsError as exc:
        _bulk_call_failed(job, to_send, mode, exc, bucket, sleep)
        return
    # The fleet index learns of the portal's own writes before any sync pass can call them drift.
    failed = {e.id.lower() for e in result.errors or () if e.id}
    record_bulk_applied(job.instance, mode, [items[row.id] for row in to_send], failed)
    _finish_rows(job, _item_outcomes(to_send, result))


def _settle_unsent(
    job: BulkJob, rows: list[BulkRow], client: DpsApi, bucket: TokenBucket
) -> list[BulkRow]:
    """Store the outcome of rows decided without a call; return the rows left to send.

    A row in doubt may turn out applied (or changed by someone else) already; a row tried
    too often fails.
    """
    outcomes: list[tuple[BulkRow, str, str, str]] = []
    to_send: list[BulkRow] = []
    for row in rows:
        decided = (
            _resolve_in_doubt(row, client, bucket) if row.status == RowStatus.SENDING else None
        )
        if decided is not None:
            outcomes.append((row, *decided))
        elif row.attempts >= MAX_ATTEMPTS:
            outcomes.append(
                (row, RowStatus.FAILED, "", "DPS did not accept the row after repeated attempts.")
            )
        else:
            to_send.append(row)
    if outcomes:
        _finish_rows(job, outcomes)
    return to_send


def _bulk_call_failed(
    job: BulkJob,
    rows: list[BulkRow],
    mode: str,
    exc: DpsError,
    bucket: TokenBucket,
    sleep: Callable[[float], None],
) -> None:
    """Handle a bulk call DPS refused or did not answer: retry later, fail the rows, or raise."""
    if isinstance(exc, DpsThrottled):
        # 429: DPS did nothing. Everyone waits; the rows go back to pending.
        bucket.hold(backoff(0, exc.retry_after if exc.retry_after is not None else 1.0))
        _release(rows, in_doubt=False, throttled=True)
    elif isinstance(exc, DpsUnavailable):
        # 5xx, timeout, dropped connection: DPS may have applied the items. Check before resending.
        log.warning("bulk call of job %s failed (%s); rows are in doubt", job.id, exc.status)
        _release(rows, in_doubt=True)
        sleep(backoff(min(r.attempts for r in rows)))
    elif isinstance(exc, DpsForbidden) and job.kind == JobKind.IMPORT and mode == "delete":
        # DPS did nothing (403). The role may write but not delete: these rows and the
        # import's other delete rows fail with the reason; creates and updates go on.
        _finish_rows(job, [(row, RowStatus.FAILED, "403", DELETE_FORBIDDEN) for row in rows])
        fail_pending_deletes(job, DELETE_FORBIDDEN)
    elif isinstance(exc, (DpsForbidden, DpsUnauthorized)):
        _release(rows, in_doubt=False)
        raise exc
    else:
        code = str(exc.error_code or exc.status or "")
        _finish_rows(job, [(row, RowStatus.FAILED, code, str(exc)) for row in rows])


def _item_outcomes(
    rows: list[BulkRow], result: BulkEnrollmentOperationResult
) -> list[tuple[BulkRow, str, str, str]]:
    """Return each sent row's outcome from the bulk call's per-item errors."""
    errors = {e.id.lower(): e for e in result.errors or () if e.id}
    outcomes: list[tuple[BulkRow, str, str, str]] = []
    for row in rows:
        err = errors.get(row.reg_key)
        if err is None:
            outcomes.append((row, RowStatus.DONE, "", ""))
        else:
            outcomes.append(
                (
                    row,
                    _error_status(row.plan, err.error_code),
                    str(err.error_code or ""),
                    item_error_text(err.error_code, err.error_status or ""),
                )
            )
    return outcomes


def _run_registration_deletes(
    job: BulkJob, rows: list[BulkRow], client: DpsApi, bucket: TokenBucket
) -> None:
    outcomes: list[tuple[BulkRow, str, str, str]] = []
    for row in rows:

        def attempt(r: BulkRow = row) -> None:
            if not _mark_sending([r]):
                raise _LeaseLost
            client.registration_delete(r.registration_id, if_match=r.etag or None)

        try:
            paced(bucket, attempt)
        except _LeaseLost:
            continue  # another worker took the row over while this one waited for a turn
        except DpsNotFound:
            outcomes.append((row, RowStatus.DONE, "", "Already absent."))
        except (DpsForbidden, DpsUnauthorized):
            _release(rows, in_doubt=False)
            raise
        except DpsError as exc:
            outcomes.append(
                (
                    row,
                    _error_status(row.plan, _int(exc.error_code)),
                    str(exc.error_code or exc.status or ""),
                    str(exc),
                )
            )
        else:
            outcomes.append((row, RowStatus.DONE, "", ""))
    _finish_rows(job, outcomes)


def _claimed_for_send(row: BulkRow) -> bool:
    return bool(_mark_sending([row]))


def _status_call_failed(
    rows: list[BulkRow],
    n: int,
    exc: DpsThrottled | DpsUnavailable,
    bucket: TokenBucket,
    sleep: Callable[[float], None],
) -> None:
    """Give back row ``n`` of a status chunk, whose write DPS throttled or did not answer, and
    the rows after it.

    Nothing was applied on a 429; maybe on a 5xx, so that row stays in doubt: the next claim
    reads the record again and decides. The rows after it were not tried.
    """
    row = rows[n]
    throttled = isinstance(exc, DpsThrottled)
    if throttled:
        bucket.hold(backoff(0, exc.retry_after if exc.retry_after is not None else 1.0))
    _release([row], in_doubt=not throttled, throttled=throttled)
    _release(rows[n + 1 :], in_doubt=False)
    if not throttled:
        sleep(backoff(row.attempts))


def _run_status_changes(
    job: BulkJob,
    rows: list[BulkRow],
    client: DpsApi,
    bucket: TokenBucket,
    sleep: Callable[[float], None],
    caps: frozenset[str] | None,
) -> None:
    """Apply a status job's chunk, or a group deletion's, record by record.

    See :mod:`enrollments.bulk.status`.
    """
    record_kind = job_record_kind(job)
    if job.kind == JobKind.SET_STATUS:
        held = held_capabilities(
            caps
            if caps is not None
            else access().capabilities(owner=job.owner, instance=job.instance)
        )
        apply: Callable[..., tuple[str, str, str]] = partial(
            status_apply, caps=held, record_kind=record_kind
        )
    else:
        apply = group_delete_apply
    outcomes: list[tuple[BulkRow, str, str, str]] = []
    try:
        for n, row in enumerate(rows):
            if row.attempts >= MAX_ATTEMPTS:
                outcomes.append(
                    (
                        row,
                        RowStatus.FAILED,
                        "",
                        "DPS did not accept the change after repeated attempts.",
                    )
                )
                continue
            try:
                outcome = apply(
                    row,
                    owner=job.owner,
                    instance=job.instance,
                    client=client,
                    bucket=bucket,
                    claim_send=partial(_claimed_for_send, row),
                )
            except StatusLeaseLost:
                continue  # another worker took the row over while this one waited for a turn
            except (DpsThrottled, DpsUnavailable) as exc:
                _status_call_failed(rows, n, exc, bucket, sleep)
                return
            except (DpsForbidden, DpsUnauthorized):
                _release(rows[n:], in_doubt=False)
                raise
            except DpsError as exc:
                code = str(exc.error_code or exc.status or "")
                outcomes.append(
                    (
                        row,
                        _error_status(row.plan, _int(exc.error_code) or exc.status),
                        code,
                        str(exc),
                    )
                )
            else:
                outcomes.append((row, *outcome))
    finally:
        _finish_rows(job, outcomes)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def run_rows(
    job: BulkJob,
    client: DpsApi,
    bucket: TokenBucket,
    *,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    lanes: int = 1,
    make_client: Callable[[], DpsApi] | None = None,
    caps: frozenset[str] | None = None,
) -> bool:
    """Apply chunks until none is left (True) or ``should_stop`` says so (False).

    With ``lanes`` above one, that many chunks are in flight at once: this thread runs one
    lane with ``client`` and each other lane runs in a thread of its own with a client from
    ``make_client`` and its own database connection. One call's round trip to DPS (tens to
    hundreds of milliseconds against Azure) would otherwise cap a job below the quota; the
    shared bucket still paces every call. The first error of any lane stops every lane and
    is raised here, once all have released their rows.
    """
    if lanes <= 1 or make_client is None or connection.vendor != "postgresql":
        # SQLite serialises writers and its test databases live in one connection.
        return _run_lane(job, client, bucket, should_stop=should_stop, sleep=sleep, caps=caps)
    halt = threading.Event()
    errors: list[BaseException] = []
    outcomes: list[bool] = []

    def stop() -> bool:
        return halt.is_set() or should_stop()

    def lane(lane_client: DpsApi | None) -> None:
        try:
            outcomes.append(
                _run_lane(
                    job,
                    lane_client if lane_client is not None else make_client(),
                    bucket,
                    should_stop=stop,
                    sleep=sleep,
                    caps=caps,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)
            halt.set()
        finally:
            if lane_client is None:
                connection.close()  # this thread's own connection

    threads = [
        threading.Thread(target=lane, args=(None,), name=f"bulk-job-{job.pk}-lane-{n}")
        for n in range(1, lanes)
    ]
    for thread in threads:
        thread.start()
    lane(client)  # records its error like the others, so the threads are always joined
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return all(outcomes)


def _run_lane(
    job: BulkJob,
    client: DpsApi,
    bucket: TokenBucket,
    *,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None],
    caps: frozenset[str] | None = None,
) -> bool:
    """Claim and apply chunks one after another until none is left or ``should_stop``."""
    lease = uuid.uuid4().hex
    after = 0  # claims go forward in id order; a row released behind is found on a new pass
    while True:
        if should_stop():
            return False
        rows = claim(job, lease, after=after)
        if not rows and after:
            after = 0
            rows = claim(job, lease)
        if not rows:
            return True
        after = rows[-1].id
        try:
            run_chunk(job, rows, client, bucket, sleep=sleep, caps=caps)
        except BaseException:
            # Anything unexpected (ReauthRequired included): unsent rows go back, sent ones
            # stay in doubt and are checked by whoever claims them next.
            BulkRow.objects.filter(
                id__in=[r.id for r in rows], lease=lease, status=RowStatus.PENDING
            ).update(lease="", lease_until=None)
            BulkRow.objects.filter(
                id__in=[r.id for r in rows], lease=lease, status=RowStatus.SENDING
            ).update(lease="", lease_until=timezone.now() - timedelta(seconds=1))
            raise


def rows_in_flight(job: BulkJob) -> bool:
    """Return whether another worker holds a live lease on rows of ``job``."""
    return (
        BulkRow.objects.filter(job=job, lease_until__gte=timezone.now()).exclude(lease="").exists()
    )
