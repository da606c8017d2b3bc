"""Read a CSV file of enrollments: encoding, delimiter, header, line limits, records.

:func:`open_csv` detects the encoding (UTF-8 with or without BOM, UTF-16 with BOM) and the
delimiter (comma or semicolon) from the first bytes, maps header names case- and
space-insensitively and raises :class:`CsvFormatError` with one sentence for anything else.
:meth:`CsvSource.rows` reads the records and parses each (:mod:`enrollments.csv.parse`); a
row over the length or field limit, a NUL byte and a quote left open are row errors naming
their lines, and reading goes on.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from enrollments.csv.columns import canonical_column, names_registration_id
from enrollments.csv.parse import parse_row
from enrollments.csv.row import ParsedRow, refused_row

#: The csv module's own ceiling; above MAX_CELL_CHARS so a long cell is a row error, not a crash.
FIELD_SIZE_LIMIT = 32 * 1024 * 1024
#: A row longer than this (all its lines: a quoted cell may span several) is refused, the rest
#: of its line unread (settings.BULK_MAX_ROW_BYTES). Above what DPS takes in one request
#: (96 KB), with the quotes of JSON cells written twice, so no row DPS could accept is
#: refused; and a line of a million commas never reaches the CSV reader, whose list of
#: cells would take eight bytes a comma.
MAX_ROW_BYTES = 256 * 1024
#: A row or header with more fields than this is refused (settings.BULK_MAX_COLUMNS): the
#: template's columns and room for the empty columns a spreadsheet may add.
MAX_COLUMNS = 64


class CsvFormatError(Exception):
    """The file as a whole cannot be read; the message says why in one sentence."""


class RecordSplit(Exception):
    """A record runs past the end of the byte range being read (a quoted cell spans it)."""


class _Refused(Exception):
    """The line reader refused a line: ``why`` is "long" (past the row limit) or "nul"."""

    def __init__(self, why: str, raw: bytes | str) -> None:
        super().__init__(why)
        self.why = why
        self.raw = raw


class _Lines:
    """The lines of a stream for the CSV reader, each checked before the reader splits it.

    Each line is read at most up to what is left of the row limit, so a line far too long is
    never held whole, and refused (:class:`_Refused`) before the CSV reader splits it; so is
    a line with a NUL. ``line`` is the number of the last line read, ``last`` that of the
    last line of the previous record, ``used`` the bytes (UTF-16: characters) of the record
    being read; ``past`` says the lines ran to ``stop``, the last line of a byte range.
    """

    __slots__ = ("_decode", "_limit", "_nul", "_readline", "_stop", "last", "line", "past", "used")

    def __init__(self, source: CsvSource) -> None:
        text = source.encoding == "utf-16"
        self._readline = source.handle.readline
        self._decode: Callable[[Any], str] = str if text else bytes.decode
        self._nul: Any = "\x00" if text else b"\x00"
        self._limit = source.max_row_bytes
        self._stop = source.stop_line
        self.line = self.last = source.header_line
        self.used = 0
        self.past = False

    def __iter__(self) -> Iterator[str]:
        # Locals rather than attributes in the loop: it runs once per line of a million.
        readline, decode, nul, limit, stop = (
            self._readline,
            self._decode,
            self._nul,
            self._limit,
            self._stop,
        )
        line = self.line
        while stop is None or line < stop:
            raw = readline(limit - self.used + 1)
            if not raw:
                return
            self.line = line = line + 1
            self.used = used = self.used + len(raw)
            if used > limit:
                raise _Refused("long", raw)
            if nul in raw:
                raise _Refused("nul", raw)
            yield decode(raw)
        self.past = True


@dataclass
class CsvSource:
    """An open CSV file: the stream after its header, detected encoding and delimiter, columns.

    ``handle`` is the binary stream of a UTF-8 file, or the text stream of a UTF-16 file.
    """

    handle: Any
    encoding: str
    delimiter: str
    columns: list[str | None]  # canonical name per position; None for an ignored column
    header_line: int = 1  # number of the last line before the first record
    max_row_bytes: int = MAX_ROW_BYTES
    max_columns: int = MAX_COLUMNS
    stop_line: int | None = None  # the last line to read (a byte range's); None: to the end

    def rows(self, default_operation: str = "upsert") -> Iterator[ParsedRow]:
        """Yield each non-empty record parsed, from the line after ``header_line`` on.

        A row past ``max_row_bytes`` or ``max_columns``, a line with a NUL byte and a quote
        left open are row errors of the row's first line, and reading goes on. A record that
        runs past ``stop_line`` raises :class:`RecordSplit`; an undecodable line raises
        :class:`CsvFormatError`.
        """
        lines = _Lines(self)
        while True:
            try:
                yield from self._records(lines, default_operation)
                return
            except UnicodeDecodeError as exc:
                # A text stream fails in readline, before the line is counted.
                text = self.encoding == "utf-16"
                raise CsvFormatError(
                    f"Line {lines.line + text} is not valid {self.encoding.upper()} text "
                    f"({exc.reason}); "
                    "save the file as UTF-8 or UTF-16 with a byte order mark."
                ) from None
            except csv.Error as exc:
                if lines.past:
                    raise RecordSplit from None
                message, rewind = self._broken_record(lines, str(exc))
            except _Refused as refused:
                message, rewind = self._refused_record(lines, refused)
            start = lines.last + 1
            if rewind:
                # The record ran on from an open quote: read its other lines again as rows
                # of their own, so that one missing quote loses no row.
                self.handle.seek(self.handle.tell() - lines.used)
                self.handle.readline(self.max_row_bytes + 1)
                lines.line = start
            yield refused_row(start, message, default_operation)
            lines.last, lines.used = lines.line, 0

    def _records(self, lines: _Lines, default_operation: str) -> Iterator[ParsedRow]:
        """Yield the records parsed until the end, or until a line or record is refused."""
        columns, max_columns = self.columns, self.max_columns
        # strict: a quote followed by text, or open at the end, raises instead of silently
        # running on; rows() resumes at the next line after an error.
        reader = csv.reader(lines, delimiter=self.delimiter, strict=True)
        for cells in reader:
            if lines.past:
                raise RecordSplit
            start = lines.last + 1
            lines.last, lines.used = lines.line, 0
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) > max_columns:
                yield refused_row(
                    start,
                    f"Line {start} has {len(cells)} fields; the limit is "
                    f"{max_columns} (the header has {len(columns)}).",
                    default_operation,
                )
                continue
            yield parse_row(start, cells, columns, default_operation=default_operation)

    def _broken_record(self, lines: _Lines, error: str) -> tuple[str, bool]:
        """Return the message of a record the CSV reader refused, and whether to read it again."""
        start, line = lines.last + 1, lines.line
        rewind = self._can_rewind(line, start)
        # The csv module tells its errors apart only by their text.
        if "expected after" in error and line == start:
            return (
                f"Line {start} has text after the closing quote of a cell; write a quote "
                'inside a quoted cell twice ("").'
            ), rewind
        if "expected after" in error:
            message = f"The quote opened on line {start} is not closed; it ran into line {line}."
        elif "unexpected end of data" in error:
            message = (
                f"The quote opened on line {start} is not closed; it ran to the end of the "
                f"file (line {line})."
            )
        else:
            return f"Line {line} cannot be read as CSV ({error}).", rewind
        return message + self._unread(start, line), rewind

    def _refused_record(self, lines: _Lines, refused: _Refused) -> tuple[str, bool]:
        """Return the message of a refused line, and whether to read the record again."""
        start, line, raw = lines.last + 1, lines.line, refused.raw
        # A NUL inside a multi-line cell: the lines before it were the cell's.
        rewind = refused.why == "long" and self._can_rewind(line, start)
        if not rewind:
            self._skip_rest(raw)
        if refused.why == "nul":
            at = raw.index("\x00") if isinstance(raw, str) else raw.index(b"\x00")
            before = raw[:at] if isinstance(raw, str) else raw[:at].decode(errors="replace")
            return (
                f"Line {line} contains a NUL byte (\\x00) at character {len(before) + 1}; "
                "the file is probably not plain text there."
            ), rewind
        if line == start:
            return (
                f"Line {start} is longer than {self.max_row_bytes:,} bytes, the limit of one "
                "row; the rest of it is not read."
            ), rewind
        return (
            f"The quote opened on line {start} is not closed; it ran into line {line} and "
            f"past {self.max_row_bytes:,} bytes." + self._unread(start, line)
        ), rewind

    def _can_rewind(self, line: int, start: int) -> bool:
        # A UTF-16 text stream's positions are opaque: its lines are not read again.
        return line > start and self.encoding != "utf-16"

    def _skip_rest(self, raw: bytes | str) -> None:
        """Read past the rest of a line cut at the row limit, in small pieces."""
        while raw and not _ends_line(raw):
            raw = self.handle.readline(1 << 16)

    def _unread(self, start: int, line: int) -> str:
        if line == start or self._can_rewind(line, start):
            return ""
        return f" Lines {start + 1} to {line} were read as part of it, not as rows."


def _ends_line(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return raw.endswith(("\n", "\r"))
    return raw.endswith(b"\n")


#
# Opening a file
#


def open_csv(
    binary: IO[bytes], *, max_row_bytes: int = MAX_ROW_BYTES, max_columns: int = MAX_COLUMNS
) -> CsvSource:
    """Open a binary CSV stream for reading; raise :class:`CsvFormatError` on a bad file.

    The stream must be seekable: a row that ran on from an unclosed quote is read again.
    """
    head = binary.read(4096)
    if not head:
        raise CsvFormatError("The file is empty.")
    encoding = _detect_encoding(head)
    binary.seek(0)
    handle: Any = binary
    if encoding == "utf-16":
        handle = io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")
    elif encoding == "utf-8-sig":
        binary.read(3)
    delimiter, names = _split_header(_header_line(handle, encoding, max_row_bytes))
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    return CsvSource(
        handle=handle,
        encoding=encoding,
        delimiter=delimiter,
        columns=_header_columns(names, max_columns),
        max_row_bytes=max_row_bytes,
        max_columns=max_columns,
    )


def read_rows(
    binary: IO[bytes],
    *,
    default_operation: str = "upsert",
    max_rows: int | None = None,
    max_row_bytes: int = MAX_ROW_BYTES,
    max_columns: int = MAX_COLUMNS,
) -> Iterator[ParsedRow]:
    """Yield each record of a CSV stream parsed; raise :class:`CsvFormatError` on a bad file."""
    source = open_csv(binary, max_row_bytes=max_row_bytes, max_columns=max_columns)
    count = 0
    for row in source.rows(default_operation):
        count += 1
        if max_rows is not None and count > max_rows:
            raise CsvFormatError(
                f"The file has more than {max_rows:,} rows, the limit of one import; split it."
            )
        yield row


def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvFormatError(
            "The file is UTF-32; save it as UTF-8 or UTF-16 with a byte order mark."
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        half = max(1, len(head) // 2)
        if max(head[0::2].count(0), head[1::2].count(0)) >= 0.4 * half:
            raise CsvFormatError(
                "The file looks like UTF-16 without a byte order mark; "
                "save it as UTF-8, or as UTF-16 with a byte order mark."
            )
        raise CsvFormatError("The file is not text: it contains binary data (NUL bytes).")
    return "utf-8"


def _header_line(handle: Any, encoding: str, max_row_bytes: int) -> str:
    """Return the first line, decoded; refuse one past the row limit or holding a NUL."""
    try:
        raw = handle.readline(max_row_bytes + 1)
        if len(raw) > max_row_bytes:
            raise CsvFormatError(
                f"The header line is longer than {max_row_bytes:,} bytes, the limit of one row."
            )
        line: str = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(
            f"The header is not valid {encoding.upper()} text ({exc.reason}); "
            "save the file as UTF-8 or UTF-16 with a byte order mark."
        ) from None
    if "\x00" in line:
        raise CsvFormatError("The file is not text: it contains binary data (NUL bytes).")
    return line


def _split_header(line: str) -> tuple[str, list[str]]:
    """Return the delimiter and the header's cells: the split that finds registrationId."""
    stripped = line.rstrip("\r\n")
    if not stripped.strip():
        raise CsvFormatError("The first line is empty; it must be the header row.")
    best: tuple[str, list[str]] | None = None
    for delimiter in (",", ";"):
        cells = next(csv.reader([stripped], delimiter=delimiter))
        if any(canonical_column(c) == "registrationId" for c in cells):
            if best is None or len(cells) > len(best[1]):
                best = (delimiter, cells)
    if best is None:
        if "\t" in stripped and names_registration_id(stripped):
            raise CsvFormatError(
                "The file is separated by tabs; use commas or semicolons between columns."
            )
        raise CsvFormatError(
            "The first line is not a header with a registrationId column; add the header row "
            "(download the template to see it)."
        )
    return best


def _header_columns(names: list[str], max_columns: int) -> list[str | None]:
    """Return the column of each header cell (None: an empty cell, ignored)."""
    if len(names) > max_columns:
        raise CsvFormatError(f"The header has {len(names)} columns; the limit is {max_columns}.")
    columns: list[str | None] = []
    unknown: list[str] = []
    for name in names:
        canonical = canonical_column(name)
        if canonical is None:
            if name.strip():
                unknown.append(name.strip())
        elif canonical in columns:
            raise CsvFormatError(f"The column {canonical} appears twice in the header.")
        columns.append(canonical)
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5])
        raise CsvFormatError(
            f"Unknown column{'s' if len(unknown) > 1 else ''} {shown} in the header; "
            "the columns are listed in the format help."
        )
    return columns
