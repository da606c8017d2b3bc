"""The status job's runner against a scripted DPS: 429, 5xx, and a record changed since."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from enrollments.bulk.runner import claim, run_chunk
from enrollments.bulk.selection import selection_store
from enrollments.dps.exceptions import DpsThrottled, DpsUnavailable
from enrollments.dps.types import IndividualEnrollment
from enrollments.models import BulkJob, BulkRow, JobKind, RowStatus
from enrollments.ratelimit import LocalTokenBucket
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db
CAPS = frozenset({"enrollments.read", "enrollments.write"})


class ScriptedDps:
    """Records held in memory; each PUT first raises what ``put_errors`` still holds."""

    def __init__(self, ids: list[str], put_errors: list[Exception]) -> None:
        self.records = {
            rid: {
                "registrationId": rid,
                "attestation": {"type": "tpm", "tpm": {"endorsementKey": "AAAA"}},
                "provisioningStatus": "enabled",
                "etag": f'"{rid}-1"',
            }
            for rid in ids
        }
        self.put_errors = put_errors
        self.puts: list[tuple[str, str | None]] = []

    def enrollment_get(self, rid: str) -> IndividualEnrollment:
        return IndividualEnrollment.from_json(dict(self.records[rid]))

    def enrollment_put(
        self, enrollment: IndividualEnrollment, *, if_match: str | None = None
    ) -> IndividualEnrollment:
        rid = enrollment.registration_id
        self.puts.append((rid, if_match))
        if self.put_errors:
            error = self.put_errors.pop(0)
            if isinstance(error, DpsUnavailable):  # applied, but the answer was lost
                self.records[rid]["provisioningStatus"] = enrollment.provisioning_status
            raise error
        assert if_match == self.records[rid]["etag"]
        doc = enrollment.to_json()
        doc["etag"] = f'"{rid}-2"'
        self.records[rid] = doc
        return IndividualEnrollment.from_json(doc)


def _job(ids: list[str], etags: dict[str, str]) -> BulkJob:
    owner = get_user_model().objects.create_user("status-runner@example.com")
    instance = DpsInstance.objects.create(name="st-dps", host="127.0.0.1:1", resource_id="/st")
    job = BulkJob.objects.create(
        kind=JobKind.SET_STATUS, owner=owner, instance=instance, options={"status": "disabled"}
    )
    selection_store(job, [(rid, etags.get(rid, f'"{rid}-1"')) for rid in ids])
    return job


def _chunk(job: BulkJob, dps: Any, bucket: LocalTokenBucket) -> None:
    rows = claim(job, "lease")
    run_chunk(job, rows, dps, bucket, sleep=lambda s: None, caps=CAPS)


def _statuses(job: BulkJob) -> dict[str, str]:
    return dict(BulkRow.objects.filter(job=job).values_list("registration_id", "status"))


def test_a_throttled_write_gives_the_rows_back_without_spending_attempts() -> None:
    ids = ["a", "b", "c"]
    job = _job(ids, {})
    dps = ScriptedDps(ids, [DpsThrottled(status=429, retry_after=0)])
    bucket = LocalTokenBucket(60000, sleep=lambda s: None)
    _chunk(job, dps, bucket)
    assert set(_statuses(job).values()) == {RowStatus.PENDING}
    assert set(BulkRow.objects.filter(job=job).values_list("attempts", flat=True)) == {0}
    _chunk(job, dps, bucket)
    assert set(_statuses(job).values()) == {RowStatus.DONE}
    assert {r["provisioningStatus"] for r in dps.records.values()} == {"disabled"}
    assert [rid for rid, _ in dps.puts] == ["a", "a", "b", "c"]


def test_a_lost_answer_leaves_the_row_in_doubt_then_done_without_a_second_write() -> None:
    job = _job(["a"], {})
    dps = ScriptedDps(["a"], [DpsUnavailable(status=503)])
    bucket = LocalTokenBucket(60000, sleep=lambda s: None)
    _chunk(job, dps, bucket)
    assert _statuses(job) == {"a": RowStatus.SENDING}
    _chunk(job, dps, bucket)
    row = BulkRow.objects.get(job=job)
    assert (row.status, row.message) == (RowStatus.DONE, "Already disabled.")
    assert len(dps.puts) == 1


def test_a_record_changed_since_the_index_is_a_conflict_and_not_written() -> None:
    job = _job(["a", "b"], {"b": '"b-0"'})  # the index saw an older version of b
    dps = ScriptedDps(["a", "b"], [])
    _chunk(job, dps, LocalTokenBucket(60000, sleep=lambda s: None))
    assert _statuses(job) == {"a": RowStatus.DONE, "b": RowStatus.CONFLICT}
    assert dps.records["b"]["provisioningStatus"] == "enabled"
    assert [rid for rid, _ in dps.puts] == ["a"]
    job.refresh_from_db()
    assert (job.count_done, job.count_conflict) == (1, 1)
