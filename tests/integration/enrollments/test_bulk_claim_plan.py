"""Claiming the next rows of a large job walks only the rows still to send (PostgreSQL plan)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from authn.models import DpsInstance
from enrollments.bulk.runner import _claimable, claim
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_job() -> BulkJob:
    if connection.vendor != "postgresql":
        pytest.skip("the query plan under test is PostgreSQL's (DATABASE_URL is not PostgreSQL)")
    owner = get_user_model().objects.create_user("planner@example.com")
    instance = DpsInstance.objects.create(name="plan-dps", host="127.0.0.1:1", resource_id="/x")
    job = BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance)
    BulkRow.objects.bulk_create(
        BulkRow(
            job=job,
            line_no=n + 2,
            registration_id=f"dev-{n}",
            plan=RowPlan.CREATE,
            status=RowStatus.DONE if n < 19_980 else RowStatus.PENDING,
        )
        for n in range(20_000)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {BulkRow._meta.db_table}")
    return job


def _rows_touched(node: dict) -> int:
    """Sum the rows every scan node read (kept plus removed by its filter)."""
    own = 0
    if "Scan" in node.get("Node Type", ""):
        own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
    return own + sum(_rows_touched(child) for child in node.get("Plans", []))


def test_claim_query_reads_only_open_rows(big_job: BulkJob) -> None:
    """With 19,980 rows done and 20 open, finding the next row reads the open ones only."""
    query = _claimable(big_job).order_by("id").values_list("plan", flat=True)[:1]
    plan = json.loads(query.explain(analyze=True, format="json"))
    touched = _rows_touched(plan[0]["Plan"])
    assert touched <= 20, json.dumps(plan, indent=1)


def test_claim_leases_the_first_open_rows(big_job: BulkJob) -> None:
    """A claim returns the ten lowest open rows and leases them to the caller."""
    rows = claim(big_job, "lease-1")
    assert [r.line_no for r in rows] == list(range(19_982, 19_992))
    assert all(r.lease == "lease-1" for r in rows)
