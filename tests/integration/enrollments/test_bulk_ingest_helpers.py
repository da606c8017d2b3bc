"""Validation in helper subprocesses stores exactly the rows one process stores (PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from enrollments.bulk import ingest
from enrollments.csv.reader import CsvFormatError
from enrollments.models import BulkJob, BulkRow, JobKind
from instances.models import DpsInstance

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


def with_bad_lines(rows: int) -> bytes:
    """A sample with, late in it: a NUL byte, a long line of commas, too many fields, an
    unclosed quote that runs into the next line, and text after a closing quote."""
    lines = sample(rows).encode().split(b"\r\n")
    bad = {
        rows - 400: f"upsert,dev-\x00nul,symmetricKey,{KEY},true,".encode(),
        rows - 300: b"upsert,dev-long" + b"," * 300_000,
        rows - 250: b"upsert,dev-wide" + b"," * 80,  # 82 fields
        rows - 200: f'upsert,dev-open,symmetricKey,{KEY},true,"{{""a"":1}}'.encode(),
        rows - 100: b'upsert,"dev-"text,symmetricKey',
    }
    for index, line in bad.items():
        lines[index] = line
    return b"\r\n".join(lines)


def test_row_limits_nul_and_open_quotes_are_row_errors_on_both_paths(tmp_path: Path, jobs) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(with_bad_lines(3000))
    assert path.read_bytes().index(b"\x00") > 4096
    alone = ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    split = ingest.ingest_file(jobs[1], path, max_rows=10_000, helpers=3)
    assert (split.rows, split.invalid) == (alone.rows, alone.invalid)
    assert alone.rows == 3000  # every line a row: the one the open quote ran into as well
    assert stored(jobs[1]) == stored(jobs[0])
    errors = {
        row.line_no: json.loads(row.errors)[0]["message"]
        for row in BulkRow.objects.filter(job=jobs[1], registration_id="")
    }
    assert errors == {
        2601: "Line 2601 contains a NUL byte (\\x00) at character 12; the file is probably "
        "not plain text there.",
        2701: "Line 2701 is longer than 262,144 bytes, the limit of one row; the rest of it "
        "is not read.",
        2751: "Line 2751 has 82 fields; the limit is 64 (the header has 6).",
        2801: "The quote opened on line 2801 is not closed; it ran into line 2803.",
        2901: "Line 2901 has text after the closing quote of a cell; write a quote inside a "
        'quoted cell twice ("").',
    }
    # The lines the open quote ran into are rows of their own (2802 has a bad id).
    swallowed = BulkRow.objects.filter(job=jobs[1], line_no__in=(2802, 2803)).order_by("line_no")
    assert [(r.registration_id, r.plan) for r in swallowed] == [
        ("bad id 2800", "invalid"),
        ("dev-2801", "pending"),
    ]


def test_a_late_nul_byte_never_reaches_copy(tmp_path: Path, jobs) -> None:
    """The old reader looked for NUL in the first 4 KB only: COPY then refused the row."""
    data = sample(2000).encode()
    cut = data.index(b"dev-1900,")
    path = tmp_path / "in.csv"
    path.write_bytes(data[:cut] + b"dev-\x00" + data[cut + 4 :])
    result = ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    assert result.rows == 2000
    row = BulkRow.objects.get(job=jobs[0], registration_id="", plan="invalid")
    assert "NUL byte" in json.loads(row.errors)[0]["message"]


def test_the_row_limits_of_the_settings_reach_the_helpers(tmp_path: Path, jobs, settings) -> None:
    settings.BULK_MAX_COLUMNS = 5  # the sample's header has 6 columns
    path = tmp_path / "in.csv"
    path.write_text(HEADER.replace(",twinTags", "") + sample(600)[len(HEADER) :], newline="")
    alone = ingest.ingest_file(jobs[0], path, max_rows=10_000, helpers=1)
    split = ingest.ingest_file(jobs[1], path, max_rows=10_000, helpers=3)
    assert stored(jobs[1]) == stored(jobs[0])
    refused = [e for *_, e, _ in stored(jobs[1]) if "the limit is 5" in e]
    assert alone.invalid == split.invalid == len(refused) == 600
