"""Validation of byte ranges in helper processes gives exactly what one process gives."""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.queues
from pathlib import Path

import pytest

from enrollments.bulk.chunks import LineFormat, chunk_blocks, copy_line, helper_start, run_chunk
from enrollments.bulk.ingest import _plan_chunks
from enrollments.csv.reader import RecordSplit, read_rows

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,iotEdge,twinTags\r\n"
FMT = LineFormat(head="7\t", tail="\t\t\tpending\t0\t\t\t\n", pending="pending", invalid="invalid")


def sample(rows: int) -> str:
    """Rows valid and invalid, blank lines, a formula cell, a quoted comma and a short row."""
    out = [HEADER]
    for i in range(rows):
        if i % 17 == 3:
            out.append("\r\n")
        if i % 13 == 5:
            out.append(f"create,bad id {i},symmetricKey,{KEY},maybe,\r\n")
        elif i % 29 == 7:
            out.append(f"upsert,=cmd{i},symmetricKey\r\n")
        else:
            out.append(f'upsert,dev-{i},symmetricKey,{KEY},true,"{{""n"":{i},""s"":""a,b""}}"\r\n')
    return "".join(out)


def one_process(data: bytes) -> list[str]:
    return [copy_line(FMT, row) for row in read_rows(io.BytesIO(data))]


def in_ranges(path: Path, parts: int) -> list[str]:
    chunks = _plan_chunks(path, parts, "upsert", FMT)
    assert chunks is not None
    assert len(chunks) == parts
    lines: list[str] = []
    for chunk in chunks:
        for block, count, _invalid in chunk_blocks(chunk):
            text = block.decode()
            assert text.count("\n") == count
            lines.extend(text.splitlines(keepends=True))
    return lines


@pytest.mark.parametrize("parts", [2, 3, 7])
@pytest.mark.parametrize("final_newline", [True, False])
def test_ranges_give_the_rows_lines_and_errors_of_one_process(tmp_path, parts, final_newline):
    text = sample(500)
    if not final_newline:
        text = text.rstrip("\r\n")
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode())
    expected = one_process(text.encode())
    assert len(expected) == 500
    assert any("\tinvalid\t" in line for line in expected)
    assert in_ranges(path, parts) == expected


def test_a_quoted_line_end_at_a_range_end_is_reported(tmp_path):
    # Every record spans two lines, so a cut after a line end falls inside a quoted cell
    # for at least one of several cuts.
    body = "".join(
        f'upsert,dev-{i},symmetricKey,{KEY},true,"{{""n"":\n{i}}}"\r\n' for i in range(200)
    )
    path = tmp_path / "in.csv"
    path.write_bytes((HEADER + body).encode())
    split = 0
    for parts in (2, 3, 4, 5):
        for chunk in _plan_chunks(path, parts, "upsert", FMT) or []:
            try:
                list(chunk_blocks(chunk))
            except RecordSplit:
                split += 1
    assert split > 0


def test_a_helper_reports_rows_then_done_split_or_error_through_its_pipe(tmp_path):
    good = tmp_path / "good.csv"
    good.write_bytes(sample(50).encode())
    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        (HEADER + f"upsert,dev-1,symmetricKey,{KEY}\r\n" + "x\xff\r\n").encode("latin-1")
    )

    def messages(path: Path) -> list[tuple]:
        (chunk,) = _plan_chunks(path, 1, "upsert", FMT) or []
        receive, send = multiprocessing.Pipe(duplex=False)
        run_chunk(chunk, send)
        out = []
        while True:
            try:
                out.append(receive.recv())
            except EOFError:  # the helper closed its end: all is said
                return out

    got = messages(good)
    assert [m[0] for m in got] == ["rows", "done"]
    assert got[0][2] == 50
    got = messages(bad)
    assert got[-1] == (
        "error",
        "Line 3 is not valid UTF-8 text (invalid start byte); save the file as UTF-8 or "
        "UTF-16 with a byte order mark.",
    )


def test_utf16_files_are_not_split(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(sample(20).encode("utf-16"))
    assert _plan_chunks(path, 2, "upsert", FMT) is None


def _helper_messages(path: str) -> list[tuple]:
    """Start a helper subprocess over the whole file and collect its messages."""
    (chunk,) = _plan_chunks(Path(path), 1, "upsert", FMT) or []
    proc, receive = helper_start(chunk)
    out = []
    while True:
        try:
            out.append(receive.recv())
        except EOFError:
            break
    receive.close()
    assert proc.wait(30) == 0
    return out


def _in_daemon(path: str, results: multiprocessing.queues.Queue) -> None:
    results.put(_helper_messages(path))


def test_a_helper_subprocess_validates_its_range_like_one_process(tmp_path):
    path = tmp_path / "in.csv"
    data = sample(3000).encode()
    path.write_bytes(data)
    got = _helper_messages(str(path))
    assert got[-1] == ("done",)
    lines = "".join(m[1].decode() for m in got if m[0] == "rows").splitlines(keepends=True)
    assert lines == one_process(data)
    assert sum(m[2] for m in got if m[0] == "rows") == 3000


def test_a_helper_starts_from_a_daemonic_process_like_a_celery_prefork_child(tmp_path):
    # multiprocessing refuses children to a daemon (billiard marks prefork children so);
    # helpers are plain subprocesses, so a prefork worker still validates in parallel.
    path = tmp_path / "in.csv"
    path.write_bytes(sample(40).encode())
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    daemon = context.Process(target=_in_daemon, args=(str(path), results), daemon=True)
    daemon.start()
    got = results.get(timeout=60)
    daemon.join(30)
    assert [m[0] for m in got] == ["rows", "done"]
    assert got[0][2] == 40
