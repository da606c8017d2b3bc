"""Validate a large CSV in helper processes, each over one byte range of the file.

Parsing and validating a row costs far more CPU than storing it, and one Python process uses
one core: the ingest therefore splits a large UTF-8 file at line ends into ranges, and a
helper process per range turns its rows into COPY text lines (enrollments/bulk/ingest.py
streams them into PostgreSQL). This module imports neither Django's settings nor the models,
so a helper started as a plain subprocess (``python -m enrollments.bulk.chunks``) needs no
Django setup and inherits no database connection or Celery state from the worker that starts
it. A plain subprocess rather than a ``multiprocessing`` child: a Celery prefork child is
daemonic, and ``multiprocessing`` refuses children to a daemon.

A range must start at a record boundary. A line end inside a quoted cell (a PEM certificate
spread over lines) is not one: a helper notices when its last record runs past its range and
says so, and the caller validates the whole file in one process instead.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import json.encoder
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from enrollments.csv.reader import (
    FIELD_SIZE_LIMIT,
    MAX_COLUMNS,
    MAX_ROW_BYTES,
    CsvFormatError,
    CsvSource,
    RecordSplit,
)
from enrollments.csv.row import ParsedRow

#: Rows a helper sends at a time: big enough that sending costs little per row, small enough
#: that the parent's progress and cancel checks stay frequent.
BLOCK_ROWS = 2000


def _compact_json() -> Callable[[Any], str]:
    """Return a function writing compact JSON (UTF-8 text, no ASCII escapes).

    ``JSONEncoder.encode`` builds a fresh C encoder and a circular-reference memo on every
    call, which took half the time of encoding a row's payload; one C encoder built here,
    without the memo (payloads are trees built per row), writes the same text in half the
    time. Interpreters without the C encoder get the ordinary one.
    """
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    # Arguments: markers, default, string encoder, indent, key separator, item separator,
    # sort_keys, skipkeys, allow_nan (the same choices as ``plain``).
    encode = make(
        None, plain.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda obj: "".join(encode(obj, 0))


dumps = _compact_json()


def copy_text(value: str) -> str:
    """Return ``value`` escaped for a field of PostgreSQL's COPY text format.

    The membership tests run in C and almost always fail, so a clean value costs no copy.
    """
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


@dataclass(frozen=True)
class LineFormat:
    """The constant parts of a stored row's COPY line (see enrollments.bulk.store.FIELDS)."""

    head: str  # "<job id>\t"
    tail: str  # "\t<etag>\t<diff>\t<status>\t<attempts>\t<lease>\t<error code>\t<message>\n"
    pending: str
    invalid: str


def copy_line(fmt: LineFormat, parsed: ParsedRow) -> str:
    """Return the COPY text line of one parsed row; only the columns rows vary in are escaped."""
    rid = copy_text(parsed.registration_id[:1024])
    key = copy_text(parsed.registration_id.lower()[:1024])
    payload = copy_text(dumps(parsed.payload)) if parsed.payload is not None else ""
    if parsed.errors:
        errors, plan = copy_text(dumps(parsed.errors)), fmt.invalid
    else:
        errors, plan = "", fmt.pending
    return (
        f"{fmt.head}{parsed.line_no}\t{rid}\t{key}\t{copy_text(parsed.operation)}"
        f"\t{payload}\t{errors}\t{plan}{fmt.tail}"
    )


@dataclass(frozen=True)
class Chunk:
    """One byte range of a UTF-8 CSV file and what a helper needs to validate it."""

    path: str
    start: int  # offset of the range's first line
    lines: int | None  # physical lines in the range; None for the last range (to the end)
    lines_before: int  # physical lines before it, the header included
    delimiter: str
    columns: list[str | None]
    default_operation: str
    fmt: LineFormat
    max_row_bytes: int = MAX_ROW_BYTES
    max_columns: int = MAX_COLUMNS

    def to_json(self) -> str:
        """Return the chunk as JSON, as a helper reads it on its standard input."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Chunk:
        data = json.loads(text)
        return cls(**{**data, "fmt": LineFormat(**data["fmt"])})


def chunk_blocks(chunk: Chunk) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(COPY lines, rows, invalid rows)`` blocks of one range.

    Raise :class:`CsvFormatError` for an unreadable line, and :class:`RecordSplit` when the
    range ends inside a quoted cell. The rows are read by the same
    :meth:`CsvSource.rows <enrollments.csv.reader.CsvSource.rows>` as in one process, so
    every check and message is the same.
    """
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        csv.field_size_limit(FIELD_SIZE_LIMIT)
        source = CsvSource(
            handle=handle,
            encoding="utf-8",
            delimiter=chunk.delimiter,
            columns=chunk.columns,
            header_line=chunk.lines_before,
            max_row_bytes=chunk.max_row_bytes,
            max_columns=chunk.max_columns,
            stop_line=None if chunk.lines is None else chunk.lines_before + chunk.lines,
        )
        out: list[str] = []
        invalid = 0
        for parsed in source.rows(chunk.default_operation):
            if parsed.errors:
                invalid += 1
            out.append(copy_line(chunk.fmt, parsed))
            if len(out) >= BLOCK_ROWS:
                yield "".join(out).encode(), len(out), invalid
                out, invalid = [], 0
        if out:
            yield "".join(out).encode(), len(out), invalid


def run_chunk(chunk: Chunk, conn: Connection) -> None:
    """Helper process entry: send each block, then ``("done",)``, ``("error", message)`` or
    ``("split",)``.

    A parent that has gone away (killed, or the job cancelled) closes its end of the pipe, so
    the next send fails and the helper ends.
    """
    try:
        for block in chunk_blocks(chunk):
            conn.send(("rows", *block))
        conn.send(("done",))
    except CsvFormatError as exc:
        conn.send(("error", str(exc)))
    except RecordSplit:
        conn.send(("split",))
    except (BrokenPipeError, EOFError):
        pass
    finally:
        conn.close()


#: The directory holding the ``enrollments`` package: a helper's working directory.
_PROJECT = str(Path(__file__).resolve().parents[2])


def helper_start(chunk: Chunk) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start a helper validating ``chunk``; return it and the pipe end its messages arrive on.

    The helper writes to an inherited pipe descriptor (its standard output stays free for
    anything a library prints); the chunk travels as JSON on its standard input.
    """
    receive_fd, send_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "enrollments.bulk.chunks", str(send_fd)],
            stdin=subprocess.PIPE,
            pass_fds=(send_fd,),
            cwd=_PROJECT,  # ``-m`` imports from the working directory
        )
    except BaseException:
        os.close(receive_fd)
        raise
    finally:
        os.close(send_fd)  # only the helper writes; its exit then ends our reads
    receive = Connection(receive_fd, writable=False)
    assert proc.stdin is not None
    try:
        proc.stdin.write(chunk.to_json().encode())
        proc.stdin.close()
    except OSError:
        pass  # the helper died at once: the parent sees EOF on the pipe
    return proc, receive


def main(argv: list[str]) -> int:
    """Helper entry: validate the chunk read from stdin, send messages on descriptor argv[0]."""
    chunk = Chunk.from_json(sys.stdin.read())
    run_chunk(chunk, Connection(int(argv[0]), readable=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
