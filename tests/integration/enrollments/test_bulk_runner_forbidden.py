"""DPS refusing an import's deletes (403) fails those rows, not the whole job."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from enrollments.bulk.runner import run_rows
from enrollments.dps.exceptions import DpsForbidden
from enrollments.models import BulkJob, BulkRow, JobKind, RowPlan, RowStatus
from enrollments.ratelimit import LocalTokenBucket
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db


class NoDeleteDps:
    """A DPS where the caller's role may write but not delete (RBAC says 403 to deletes)."""

    def __init__(self) -> None:
        self.modes: list[str] = []

    def enrollment_bulk(self, mode: str, items: list[Any]) -> Any:
        self.modes.append(mode)
        if mode == "delete":
            raise DpsForbidden(status=403)
        return SimpleNamespace(errors=[])


def test_forbidden_deletes_fail_alone_and_the_other_rows_apply() -> None:
    owner = get_user_model().objects.create_user("forbidden@example.com")
    instance = DpsInstance.objects.create(name="f-dps", host="127.0.0.1:1", resource_id="/f")
    job = BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance)
    rows = []
    for n in range(25):
        plan = RowPlan.DELETE if n % 2 else RowPlan.CREATE
        rid = f"dev-{n}"
        payload = {"registrationId": rid, "attestation": {"type": "symmetricKey"}}
        rows.append(
            BulkRow(
                job=job,
                line_no=n + 2,
                registration_id=rid,
                reg_key=rid,
                plan=plan,
                etag="e" if plan == RowPlan.DELETE else "",
                payload=json.dumps(payload),
            )
        )
    BulkRow.objects.bulk_create(rows)
    dps = NoDeleteDps()
    finished = run_rows(
        job,
        dps,  # type: ignore[arg-type]
        LocalTokenBucket(60000, sleep=lambda s: None),
        should_stop=lambda: False,
        sleep=lambda s: None,
    )
    assert finished
    deletes = BulkRow.objects.filter(job=job, plan=RowPlan.DELETE)
    assert set(deletes.values_list("status", "error_code")) == {(RowStatus.FAILED, "403")}
    assert "delete" in deletes.first().message  # type: ignore[union-attr]
    creates = BulkRow.objects.filter(job=job, plan=RowPlan.CREATE)
    assert set(creates.values_list("status", flat=True)) == {RowStatus.DONE}
    assert dps.modes.count("delete") == 1  # the first 403 settles every delete row
    job.refresh_from_db()
    assert (job.count_done, job.count_failed) == (13, 12)
