"""A 429 gives the chunk back without spending an attempt; other errors spend one."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from enrollments.bulk.runner import MAX_ATTEMPTS, claim, run_chunk
from enrollments.dps.exceptions import DpsNotFound, DpsThrottled, DpsUnavailable
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus
from enrollments.ratelimit import LocalTokenBucket
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


class RefusingClient:
    """A DPS that answers every bulk call with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def enrollment_bulk(self, mode, items):
        self.calls += 1
        raise self.error

    def enrollment_get(self, registration_id):
        raise DpsNotFound(status=404)  # an in-doubt row turns out not applied


@pytest.fixture
def job() -> BulkJob:
    owner = get_user_model().objects.create_user("throttle@example.com")
    instance = DpsInstance.objects.create(name="thr-dps", host="127.0.0.1:1", resource_id="/t")
    job = BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance)
    BulkRow.objects.bulk_create(
        BulkRow(
            job=job,
            line_no=n + 2,
            registration_id=f"dev-{n}",
            reg_key=f"dev-{n}",
            plan=RowPlan.CREATE,
            payload=json.dumps(
                {
                    "registrationId": f"dev-{n}",
                    "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
                }
            ),
        )
        for n in range(10)
    )
    return job


def _run_once(job: BulkJob, client: RefusingClient) -> None:
    rows = claim(job, "lease")
    assert len(rows) == 10
    run_chunk(
        job, rows, client, LocalTokenBucket(60000, sleep=lambda s: None), sleep=lambda s: None
    )


def test_throttled_rows_keep_their_attempts_and_never_fail_for_it(job: BulkJob) -> None:
    client = RefusingClient(DpsThrottled(status=429, retry_after=0))
    for _ in range(MAX_ATTEMPTS + 3):
        _run_once(job, client)
    rows = BulkRow.objects.filter(job=job)
    assert set(rows.values_list("attempts", flat=True)) == {0}
    assert set(rows.values_list("status", flat=True)) == {RowStatus.PENDING}
    assert client.calls == MAX_ATTEMPTS + 3


def test_failed_calls_spend_attempts_and_rows_fail_after_the_limit(job: BulkJob) -> None:
    client = RefusingClient(DpsUnavailable(status=503))
    for _ in range(MAX_ATTEMPTS):
        _run_once(job, client)  # each failure leaves the rows in doubt, checked by GET next
    rows = BulkRow.objects.filter(job=job)
    assert set(rows.values_list("attempts", flat=True)) == {MAX_ATTEMPTS}
    _run_once(job, client)
    assert set(rows.values_list("status", flat=True)) == {RowStatus.FAILED}
    assert client.calls == MAX_ATTEMPTS


class RecordingClient:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def enrollment_bulk(self, mode, items):
        from enrollments.dps.types import BulkEnrollmentOperationResult

        self.sent.extend(i.registration_id for i in items)
        return BulkEnrollmentOperationResult.from_json({"isSuccessful": True, "errors": []})


class SlowTurnBucket(LocalTokenBucket):
    """A bucket whose turn comes so late that the chunk's lease has run out meanwhile, and
    another worker has claimed part of the chunk."""

    def __init__(self, job: BulkJob, steal: int) -> None:
        super().__init__(60000, sleep=lambda s: None)
        self.job, self.steal = job, steal

    def acquire(self, tokens: int = 1) -> float:
        ids = list(BulkRow.objects.filter(job=self.job).order_by("id")[: self.steal])
        BulkRow.objects.filter(id__in=[r.id for r in ids]).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        assert len(claim(self.job, "other-worker")) == self.steal
        return 0.0


def test_rows_another_worker_took_over_while_waiting_for_a_turn_are_not_sent(job) -> None:
    rows = claim(job, "lease")
    client = RecordingClient()
    run_chunk(job, rows, client, SlowTurnBucket(job, steal=4), sleep=lambda s: None)
    assert client.sent == [f"dev-{n}" for n in range(4, 10)]
    by_lease = dict(
        BulkRow.objects.filter(job=job).values_list("lease").annotate(n=Count("id")).order_by()
    )
    assert by_lease == {"other-worker": 4, "": 6}  # the six sent are done and released
    assert BulkRow.objects.filter(job=job, status=RowStatus.DONE).count() == 6
    assert set(BulkRow.objects.filter(lease="other-worker").values_list("attempts", flat=True)) == {
        0
    }
