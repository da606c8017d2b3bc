"""A 429 gives the chunk back without spending an attempt; other errors spend one."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from authn.models import DpsInstance
from enrollments.bulk.runner import MAX_ATTEMPTS, claim, run_chunk
from enrollments.dps.exceptions import DpsNotFound, DpsThrottled, DpsUnavailable
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus
from enrollments.ratelimit import LocalTokenBucket

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
    payload = json.dumps(
        {
            "registrationId": "x",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        }
    )
    BulkRow.objects.bulk_create(
        BulkRow(
            job=job,
            line_no=n + 2,
            registration_id=f"dev-{n}",
            reg_key=f"dev-{n}",
            plan=RowPlan.CREATE,
            payload=payload,
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
