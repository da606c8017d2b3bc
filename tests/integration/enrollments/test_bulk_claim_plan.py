"""Claiming the next rows of a large job walks only the rows still to send (PostgreSQL plan)."""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction

from enrollments.bulk.preview import plan_counts_store
from enrollments.bulk.runner import _claimable, claim
from enrollments.bulk.store import rows_analyze
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db


def _job_with_rows(name: str, plans: list[str]) -> BulkJob:
    """A job of ``name`` whose rows (lines 2, 3, ...) have the given plans, all pending."""
    owner = get_user_model().objects.create_user(f"{name}@example.com")
    instance = DpsInstance.objects.create(name=name, host="127.0.0.1:1", resource_id=f"/{name}")
    job = BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance)
    BulkRow.objects.bulk_create(
        BulkRow(job=job, line_no=n + 2, registration_id=f"dev-{n}", plan=plan)
        for n, plan in enumerate(plans)
    )
    return job


def _make_job(stats: str) -> BulkJob:
    """A 20,000-row job at the point where 19,980 rows are done, as a real run gets there.

    The rows are stored as an ingest stores them (plan "pending", statistics taken), then
    planned as the preview plans them; ``stats`` says whether the planner has seen the plans
    ("after preview", what the code does) or still believes the ingest's figures ("stale",
    what autovacuum may leave for a while): claims must be cheap either way.
    """
    if connection.vendor != "postgresql":
        pytest.skip("the query plan under test is PostgreSQL's (DATABASE_URL is not PostgreSQL)")
    job = _job_with_rows("planner", [RowPlan.PENDING] * 20_000)
    rows_analyze()
    # The preview: a few unchanged and invalid rows among the creates.
    BulkRow.objects.filter(job=job).update(plan=RowPlan.CREATE)
    BulkRow.objects.filter(job=job, line_no__lt=500).update(plan=RowPlan.UNCHANGED)
    BulkRow.objects.filter(job=job, line_no__in=range(1000, 1100)).update(plan=RowPlan.INVALID)
    if stats == "after preview":
        plan_counts_store(job)
    BulkRow.objects.filter(job=job, line_no__lt=19_982).exclude(
        plan__in=(RowPlan.UNCHANGED, RowPlan.INVALID)
    ).update(status=RowStatus.DONE)
    return job


@pytest.fixture(params=["after preview", "stale"])
def big_job(request: pytest.FixtureRequest) -> BulkJob:
    return _make_job(request.param)


def _rows_touched(node: dict) -> int:
    """Sum the rows every scan node read (kept plus removed by its filter)."""
    own = 0
    if "Scan" in node.get("Node Type", ""):
        own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
    return own + sum(_rows_touched(child) for child in node.get("Plans", []))


def test_claim_queries_read_only_open_rows(big_job: BulkJob) -> None:
    """With 19,980 rows done or not to send and 20 open, a claim reads the open ones only."""
    first = _claimable(big_job).order_by("id").values_list("plan", flat=True)[:1]
    of_plan = _claimable(big_job).filter(plan=RowPlan.CREATE).order_by("id").values_list("id")[:10]
    for query in (first, of_plan):
        plan = json.loads(query.explain(analyze=True, format="json"))
        touched = _rows_touched(plan[0]["Plan"])
        assert touched <= 20, json.dumps(plan, indent=1)
        assert "bulkrow_rows_to_send" in json.dumps(plan)


def test_claim_leases_the_first_open_rows(big_job: BulkJob) -> None:
    """A claim returns the ten lowest open rows and leases them to the caller."""
    rows = claim(big_job, "lease-1")
    assert [r.line_no for r in rows] == list(range(19_982, 19_992))
    assert all(r.lease == "lease-1" for r in rows)


@pytest.mark.django_db(transaction=True)
def test_a_claim_passes_over_rows_another_worker_is_claiming() -> None:
    """Rows locked by a concurrent claim are skipped, not waited for and then missed.

    Before SKIP LOCKED, a second worker's claim waited for the first worker's rows, found
    them leased, returned nothing and the worker left the job: one worker did all the work.
    """
    if connection.vendor != "postgresql":
        pytest.skip("row locks under test are PostgreSQL's (DATABASE_URL is not PostgreSQL)")
    job = _job_with_rows("claims", [RowPlan.CREATE] * 30)
    locked = threading.Event()
    release = threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                ids = list(
                    _claimable(job)
                    .order_by("id")
                    .select_for_update()
                    .values_list("id", flat=True)[:10]
                )
                assert len(ids) == 10
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(30)
        rows = claim(job, "lease-2")
    finally:
        release.set()
        thread.join(30)
    assert [r.line_no for r in rows] == list(range(12, 22))
    assert claim(job, "lease-3", after=rows[-1].id)[0].line_no == 22


def test_a_claim_takes_rows_of_one_plan_when_plans_interleave() -> None:
    """A file alternating update and delete rows still goes out in full calls of ten."""
    job = _job_with_rows("mixed", [RowPlan.UPDATE, RowPlan.DELETE, RowPlan.UNCHANGED] * 30)
    first = claim(job, "lease-a")
    second = claim(job, "lease-b", after=first[-1].id)
    assert [r.plan for r in first] == [RowPlan.UPDATE] * 10
    assert [r.line_no for r in first] == list(range(2, 32, 3))
    assert [r.plan for r in second] == [RowPlan.DELETE] * 10
