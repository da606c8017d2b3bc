"""Validation in helper subprocesses stores exactly the rows one process stores (PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from authn.models import DpsInstance
from enrollments.bulk import ingest
from enrollments.csv_format import CsvFormatError
from enrollments.models import BulkJob, BulkRow, JobKind

pytestmark = pytest.mark.django_db

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,iotEdge,twinTags\r\n"


@pytest.fixture
def jobs() -> tuple[BulkJob, BulkJob]:
    if connection.vendor != "postgresql":
        pytest.skip("helper processes feed PostgreSQL's COPY (DATABASE_URL is not PostgreSQL)")
    owner = get_user_model().objects.create_user("ingest@example.com")
    instance = DpsInstance.objects.create(name="ingest-dps", host="127.0.0.1:1", resource_id="/x")
    return (
        BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance),
        BulkJob.objects.create(kind=JobKind.IMPORT, owner=owner, instance=instance),
    )


@pytest.fixture(autouse=True)
def _split_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files of any size are split here; in use only files of 8 MB or more are.
    monkeypatch.setattr(ingest, "PARALLEL_MIN_BYTES", 0)


def sample(rows: int) -> str:
    out = [HEADER]
    for i in range(rows):
        if i % 13 == 5:
            out.append(f"create,bad id {i},symmetricKey,{KEY},maybe,\r\n")
        elif i % 97 == 11:
            out.append(f"upsert,dev-{i - 1},symmetricKey,{KEY},true,\r\n")  # a duplicate id
        else:
            out.append(f'upsert,dev-{i},symmetricKey,{KEY},true,"{{""n"":{i}}}"\r\n')
    return "".join(out)


def stored(job: BulkJob) -> list[tuple]:
    return list(
        BulkRow.objects.filter(job=job)
        .order_by("line_no")
        .values_list("line_no", "registration_id", "operation", "payload", "errors", "plan")
    )


def test_helpers_store_the_rows_and_errors_one_process_stores(tmp_path: Path, jobs) -> None:
    path = tmp_path / "in.csv"
    path.write_text(sample(3000), newline="")
    alone = ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    split = ingest.ingest_file(jobs[1], path, max_rows=10_000, helpers=3)
    assert (split.rows, split.invalid) == (alone.rows, alone.invalid) == (3000, alone.invalid)
    assert alone.invalid > 230  # bad ids and both rows of each duplicate
    assert stored(jobs[1]) == stored(jobs[0])


def test_a_quoted_line_end_on_a_cut_falls_back_to_one_process(tmp_path: Path, jobs) -> None:
    # Every record spans two physical lines, so some cut falls inside a quoted cell.
    body = "".join(
        f'upsert,dev-{i},symmetricKey,{KEY},true,"{{""n"":\n{i}}}"\r\n' for i in range(400)
    )
    path = tmp_path / "in.csv"
    path.write_text(HEADER + body, newline="")
    alone = ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    split = ingest.ingest_file(jobs[1], path, max_rows=10_000, helpers=4)
    assert split.rows == alone.rows == 400
    assert split.invalid == alone.invalid == 0
    assert stored(jobs[1]) == stored(jobs[0])


def test_a_bad_line_in_a_later_range_is_reported_as_one_process_reports_it(
    tmp_path: Path, jobs
) -> None:
    data = sample(2000).encode()
    cut = data.index(b"dev-1501,")
    path = tmp_path / "in.csv"
    path.write_bytes(data[:cut] + b"\xff" + data[cut:])
    with pytest.raises(CsvFormatError) as alone:
        ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    with pytest.raises(CsvFormatError) as split:
        ingest.ingest_file(jobs[1], path, max_rows=10_000, helpers=3)
    assert "not valid UTF-8" in str(alone.value)
    assert str(split.value) == str(alone.value)


def test_the_row_limit_holds_across_helpers(tmp_path: Path, jobs) -> None:
    path = tmp_path / "in.csv"
    path.write_text(sample(5000), newline="")
    with pytest.raises(CsvFormatError, match="more than 1,000 rows"):
        ingest.ingest_file(jobs[1], path, max_rows=1000, helpers=2, batch=500)
