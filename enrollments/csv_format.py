"""The one CSV format of individual enrollments: columns, reading, writing (docs/csv-format.md).

Reading streams: :func:`open_csv` detects the encoding (UTF-8 with or without BOM, UTF-16 with
BOM) and the delimiter (comma or semicolon) from the first bytes, maps header names case- and
space-insensitively and raises :class:`CsvFormatError` with one sentence for anything else.
:meth:`CsvSource.rows` reads the records; a row over the length or field limit, a NUL byte
and a quote left open are row errors naming their lines, and reading goes on.
:func:`parse_row` turns one record into DPS enrollment JSON plus a list of per-column errors,
using the field validators of :mod:`enrollments.validation`. Writing (:func:`enrollment_to_row`,
:func:`write_rows`) produces exactly what reading accepts, so export → import round-trips.

Cells that start with ``= + - @`` (or tab / carriage return) would run as formulas in a
spreadsheet. Export prefixes them with ``'``; import strips that one quote again, and refuses
a cell that still starts with such a character, since it most likely came from a spreadsheet
formula rather than from the operator's data.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import ValidationError

from enrollments import validation as v
from enrollments.dps.types import ATTESTATION_TYPES

#: Canonical column names, in the order export writes them.
COLUMNS: tuple[str, ...] = (
    "operation",
    "registrationId",
    "deviceId",
    "provisioningStatus",
    "attestationType",
    "tpmEndorsementKey",
    "tpmStorageRootKey",
    "symmetricKeyPrimary",
    "symmetricKeySecondary",
    "x509CertificatePrimary",
    "x509CertificateSecondary",
    "x509ThumbprintPrimary",
    "x509ThumbprintSecondary",
    "x509CaReferencePrimary",
    "x509CaReferenceSecondary",
    "iotHubs",
    "iotHubHostName",
    "allocationPolicy",
    "webhookUrl",
    "webhookApiVersion",
    "reprovisionPolicy",
    "iotEdge",
    "twinTags",
    "twinDesiredProperties",
    "optionalDeviceInformation",
    "etag",
)
OPERATIONS: tuple[str, ...] = ("create", "update", "upsert", "delete")
KEY_COLUMNS = ("symmetricKeyPrimary", "symmetricKeySecondary")
CERT_COLUMNS = ("x509CertificatePrimary", "x509CertificateSecondary")
#: A cell longer than this is refused (DPS's own message limit is 96 KB).
MAX_CELL_CHARS = 64 * 1024
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

_FORMULA_START = frozenset("=+-@\t\r")
_NEUTRALISED = re.compile(r"^'+[=+\-@\t\r]")
_HUB_SPLIT = re.compile(r"[\s,;]+")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


_BY_NORM: dict[str, str] = {_norm(c): c for c in COLUMNS}
# Accepted spellings besides the canonical ones.
_BY_NORM.update({"mode": "operation", "action": "operation", "id": "registrationId"})


class CsvFormatError(Exception):
    """The file as a whole cannot be read; the message says why in one sentence."""


class RecordSplit(Exception):
    """A record runs past the end of the byte range being read (a quoted cell spans it)."""


#
# Cells
#


def neutralise(value: str) -> str:
    """Return ``value`` safe to open in a spreadsheet: formula starts get a leading ``'``.

    A value that already starts with quotes followed by a formula character gets one more,
    so :func:`unneutralise` restores every value exactly.
    """
    if value and value.lstrip("'")[:1] in _FORMULA_START:
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """Reverse :func:`neutralise`."""
    if value[:1] == "'" and _NEUTRALISED.match(value):
        return value[1:]
    return value


#
# Reading
#


class _Refused(Exception):
    """The line reader refused a line: ``why`` is "long" (past the row limit) or "nul"."""

    def __init__(self, why: str, raw: bytes | str) -> None:
        super().__init__(why)
        self.why = why
        self.raw = raw


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
        # Locals rather than attributes in the loops: they run once per line of a million.
        text = self.encoding == "utf-16"
        readline = self.handle.readline
        decode: Callable[[Any], str] = str if text else bytes.decode
        nul: Any = "\x00" if text else b"\x00"
        limit, stop, columns = self.max_row_bytes, self.stop_line, self.columns
        max_columns = self.max_columns
        line = last = self.header_line
        used = 0  # bytes (UTF-16: characters) of the record being read
        past = False

        def lines() -> Iterator[str]:
            # Each line is read at most up to what is left of the row limit, so a line far
            # too long is never held whole, and refused before the CSV reader splits it.
            nonlocal line, used, past
            while stop is None or line < stop:
                raw = readline(limit - used + 1)
                if not raw:
                    return
                line += 1
                used += len(raw)
                if used > limit:
                    raise _Refused("long", raw)
                if nul in raw:
                    raise _Refused("nul", raw)
                yield decode(raw)
            past = True

        while True:
            # strict: a quote followed by text, or open at the end, raises instead of
            # silently running on; the reader resumes at the next line after an error.
            reader = csv.reader(lines(), delimiter=self.delimiter, strict=True)
            try:
                for cells in reader:
                    if past:
                        raise RecordSplit
                    start, last, used = last + 1, line, 0
                    if not cells or (len(cells) == 1 and not cells[0].strip()):
                        continue
                    if len(cells) > max_columns:
                        yield _refused_row(
                            start,
                            f"Line {start} has {len(cells)} fields; the limit is "
                            f"{max_columns} (the header has {len(columns)}).",
                            default_operation,
                        )
                        continue
                    yield parse_row(start, cells, columns, default_operation=default_operation)
                return
            except UnicodeDecodeError as exc:
                # A text stream fails in readline, before the line is counted.
                raise CsvFormatError(
                    f"Line {line + text} is not valid {self.encoding.upper()} text "
                    f"({exc.reason}); "
                    "save the file as UTF-8 or UTF-16 with a byte order mark."
                ) from None
            except csv.Error as exc:
                if past:
                    raise RecordSplit from None
                start = last + 1
                message = self._quote_message(start, line, str(exc))
                rewind = self._can_rewind(line, start)
            except _Refused as refused:
                start = last + 1
                message = self._refused_message(start, line, refused)
                # A NUL inside a multi-line cell: the lines before it were the cell's.
                rewind = refused.why == "long" and self._can_rewind(line, start)
                if not rewind:
                    self._skip_rest(refused.raw)
            if rewind:
                # The record ran on from an open quote: read its other lines again as rows
                # of their own, so that one missing quote loses no row.
                self.handle.seek(self.handle.tell() - used)
                readline(limit + 1)
                line = start
            yield _refused_row(start, message, default_operation)
            last, used = line, 0

    def _can_rewind(self, line: int, start: int) -> bool:
        # A UTF-16 text stream's positions are opaque: its lines are not read again.
        return line > start and self.encoding != "utf-16"

    def _skip_rest(self, raw: bytes | str) -> None:
        """Read past the rest of a line cut at the row limit, in small pieces."""
        while raw and not raw.endswith(("\n", "\r") if isinstance(raw, str) else b"\n"):
            raw = self.handle.readline(1 << 16)

    def _quote_message(self, start: int, line: int, error: str) -> str:
        if "expected after" in error and line == start:
            return (
                f"Line {start} has text after the closing quote of a cell; write a quote "
                'inside a quoted cell twice ("").'
            )
        if "expected after" in error:
            message = f"The quote opened on line {start} is not closed; it ran into line {line}."
        elif "unexpected end of data" in error:
            message = (
                f"The quote opened on line {start} is not closed; it ran to the end of the "
                f"file (line {line})."
            )
        else:
            return f"Line {line} cannot be read as CSV ({error})."
        return message + self._unread(start, line)

    def _refused_message(self, start: int, line: int, refused: _Refused) -> str:
        raw = refused.raw
        if refused.why == "nul":
            at = raw.index("\x00" if isinstance(raw, str) else b"\x00")
            before = raw[:at] if isinstance(raw, str) else raw[:at].decode(errors="replace")
            return (
                f"Line {line} contains a NUL byte (\\x00) at character {len(before) + 1}; "
                "the file is probably not plain text there."
            )
        if line == start:
            return (
                f"Line {start} is longer than {self.max_row_bytes:,} bytes, the limit of one "
                "row; the rest of it is not read."
            )
        return (
            f"The quote opened on line {start} is not closed; it ran into line {line} and "
            f"past {self.max_row_bytes:,} bytes." + self._unread(start, line)
        )

    def _unread(self, start: int, line: int) -> str:
        if line == start or self._can_rewind(line, start):
            return ""
        return f" Lines {start + 1} to {line} were read as part of it, not as rows."


def _refused_row(line_no: int, message: str, default_operation: str) -> ParsedRow:
    return ParsedRow(line_no, "", default_operation, None, [{"column": "", "message": message}])


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


def _split_header(line: str) -> tuple[str, list[str]]:
    stripped = line.rstrip("\r\n")
    if not stripped.strip():
        raise CsvFormatError("The first line is empty; it must be the header row.")
    best: tuple[str, list[str]] | None = None
    for delimiter in (",", ";"):
        cells = next(csv.reader([stripped], delimiter=delimiter))
        if any(_BY_NORM.get(_norm(c)) == "registrationId" for c in cells):
            if best is None or len(cells) > len(best[1]):
                best = (delimiter, cells)
    if best is None:
        if "\t" in stripped and "registrationid" in _norm(stripped):
            raise CsvFormatError(
                "The file is separated by tabs; use commas or semicolons between columns."
            )
        raise CsvFormatError(
            "The first line is not a header with a registrationId column; add the header row "
            "(download the template to see it)."
        )
    return best


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
    try:
        raw = handle.readline(max_row_bytes + 1)
        if len(raw) > max_row_bytes:
            raise CsvFormatError(
                f"The header line is longer than {max_row_bytes:,} bytes, the limit of one row."
            )
        header_line = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(
            f"The header is not valid {encoding.upper()} text ({exc.reason}); "
            "save the file as UTF-8 or UTF-16 with a byte order mark."
        ) from None
    if "\x00" in header_line:
        raise CsvFormatError("The file is not text: it contains binary data (NUL bytes).")
    delimiter, names = _split_header(header_line)
    if len(names) > max_columns:
        raise CsvFormatError(f"The header has {len(names)} columns; the limit is {max_columns}.")
    columns: list[str | None] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for name in names:
        canonical = _BY_NORM.get(_norm(name))
        if canonical is None:
            if name.strip():
                unknown.append(name.strip())
            columns.append(None)
            continue
        if canonical in seen:
            raise CsvFormatError(f"The column {canonical} appears twice in the header.")
        seen.add(canonical)
        columns.append(canonical)
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5])
        raise CsvFormatError(
            f"Unknown column{'s' if len(unknown) > 1 else ''} {shown} in the header; "
            "the columns are listed in the format help."
        )
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    return CsvSource(
        handle=handle,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        max_row_bytes=max_row_bytes,
        max_columns=max_columns,
    )


#
# Rows → DPS JSON
#


@dataclass
class ParsedRow:
    """One record of the file, as the importer sees it."""

    line_no: int
    registration_id: str
    operation: str
    payload: dict[str, Any] | None
    errors: list[dict[str, str]] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)


def _message(exc: ValidationError) -> str:
    return " ".join(exc.messages)


_REPROVISION_RAW = re.compile(
    r"^\s*updatehubassignment\s*=\s*(true|false)\s*[,;\s]\s*migratedevicedata\s*=\s*(true|false)\s*$",
    re.IGNORECASE,
)


def _reprovision(value: str) -> dict[str, bool] | None:
    raw = _REPROVISION_RAW.match(value)
    if raw:
        return {
            "updateHubAssignment": raw.group(1).lower() == "true",
            "migrateDeviceData": raw.group(2).lower() == "true",
        }
    policy = v.validate_reprovision_policy(value)
    return policy.to_json() if policy else None


#
# Fast paths: most cells are valid and many repeat, so the shared validators (which raise
# with a sentence) run only for a cell the cheap checks cannot accept, and pure validators of
# repeating cells are memoised. Every fast path accepts a subset of what its validator accepts
# and returns the same value.
#

_FAST_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?")
_FAST_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_FAST_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FAST_TWIN_KEY = re.compile(r"[A-Za-z0-9_\-:@#/]{1,128}")
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
#: Written compactly with ASCII escapes, one character takes at most 12 bytes (a surrogate pair).
_FAST_TWIN_MAX_CHARS = v.MAX_TWIN_BYTES // 12
_MEMO: dict[tuple[Any, ...], tuple[bool, Any]] = {}
_MEMO_MAX = 4096


def _memo(key: tuple[Any, ...], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Return ``fn(*args)`` from a bounded cache; a ValidationError is cached and re-raised."""
    hit = _MEMO.get(key)
    if hit is None:
        try:
            hit = (True, fn(*args, **kwargs))
        except ValidationError as exc:
            hit = (False, exc)
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = hit
    if hit[0]:
        return hit[1]
    # A fresh traceback each time: re-raising one instance would keep growing the old one.
    raise hit[1].with_traceback(None)


def _hubs(text: str) -> tuple[str, ...]:
    return tuple(v.validate_iot_hubs(_HUB_SPLIT.split(text.strip())))


def _registration_id(value: str) -> str:
    if len(value) <= v.MAX_ID_LENGTH and _FAST_ID.fullmatch(value):
        return value
    return v.validate_registration_id(value)


def _device_id(value: str | None) -> str | None:
    if not value:
        return None
    if _FAST_DEVICE_ID.fullmatch(value):
        return value
    return v.validate_device_id(value)


def _fast_key(value: str) -> bool:
    """Return whether ``value`` is plainly a valid symmetric key (base64 of 16 to 64 bytes)."""
    if _FAST_B64.fullmatch(value):
        low, high = v.SYMMETRIC_KEY_BYTES
        return low <= len(value) // 4 * 3 - value.count("=", -2) <= high
    return False


def _symmetric_key(value: str | None, label: str) -> str | None:
    if not value:
        return None
    if _fast_key(value):
        return value
    return v.validate_symmetric_key(value, label)


def _fast_twin(value: str) -> dict[str, Any] | None:
    """Return a flat twin object with plain keys, or None when the full check must decide."""
    if len(value) > _FAST_TWIN_MAX_CHARS:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    # map() keeps both scans in C: a generator per row cost more than the JSON parse.
    if (
        type(data) is dict
        and _SCALAR_TYPES.issuperset(map(type, data.values()))
        and all(map(_FAST_TWIN_KEY.fullmatch, data))
    ):
        return data
    return None


def _twin_json(value: str, label: str) -> dict[str, Any] | None:
    if not value or not value.strip():
        return None
    data = _fast_twin(value)
    if data is not None:
        return data
    return v.parse_twin_json(value, label)


def _twin_cell(value: str | None, column: str, label: str, check: Any) -> dict[str, Any] | None:
    """Return the twin object of a cell (None when blank or invalid, the error recorded)."""
    if not value:
        return None
    data = _fast_twin(value)
    if data is not None:
        return data
    return check(column, _twin_json, value, label)


#: Per distinct settings cells: the payload fragment, its errors, and the names of its values
#: that are containers (each row gets its own copy of those).
_SETTINGS_MEMO: dict[
    tuple[Any, ...], tuple[dict[str, Any], list[dict[str, str]], tuple[str, ...]]
] = {}


def _settings(
    status_text_in: str | None,
    hubs_in: str,
    legacy_in: str,
    policy_in: str | None,
    webhook_in: str | None,
    api_in: str | None,
    reprovision_in: str,
    edge_in: str,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Validate the cells most rows repeat (status, hubs, allocation, reprovision, IoT Edge).

    Returns the payload fragment and the errors; :func:`parse_row` memoises the result.
    """
    payload: dict[str, Any] = {}
    errors: list[dict[str, str]] = []

    def err(column: str, message: str) -> None:
        errors.append({"column": column, "message": message})

    def check(column: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            err(column, _message(exc))
            return None

    status_text = status_text_in
    status = check(
        "provisioningStatus",
        _memo,
        ("status", status_text),
        v.validate_provisioning_status,
        status_text,
    )
    if status:
        payload["provisioningStatus"] = status
    hubs_text = hubs_in
    hubs = list(check("iotHubs", _memo, ("hubs", hubs_text), _hubs, hubs_text) or ())
    if hubs:
        payload["iotHubs"] = hubs
    legacy_hub = legacy_in.strip()
    if legacy_hub:
        hub = check("iotHubHostName", v.validate_iot_hub_host_name, legacy_hub)
        if hub:
            payload["iotHubHostName"] = hub
    try:
        alloc_hubs = hubs or ([legacy_hub] if legacy_hub else [])
        key = (
            "alloc",
            policy_in,
            tuple(alloc_hubs),
            webhook_in,
            api_in,
        )
        policy, custom = _memo(
            key,
            v.validate_allocation,
            policy_in,
            iot_hubs=alloc_hubs,
            webhook_url=webhook_in,
            api_version=api_in,
        )
    except ValidationError as exc:
        message = _message(exc)
        column = "webhookUrl" if "webhook" in message.lower() else "allocationPolicy"
        if "api version" in message.lower():
            column = "webhookApiVersion"
        err(column, message)
    else:
        if policy:
            payload["allocationPolicy"] = policy
        if custom:
            payload["customAllocationDefinition"] = custom.to_json()
    if reprovision_in.strip():
        text = reprovision_in
        reprovision = check("reprovisionPolicy", _memo, ("rp", text), _reprovision, text)
        if reprovision:
            payload["reprovisionPolicy"] = dict(reprovision)
    if edge_in.strip():
        edge = check("iotEdge", _memo, ("edge", edge_in), v.validate_iot_edge, edge_in)
        if edge is not None:
            payload["capabilities"] = {"iotEdge": edge}
    return payload, errors


#: A cell starting with one of these needs a look (a formula, or an export's neutralising quote).
_SPECIAL_START = frozenset("'") | _FORMULA_START
_first_char = operator.itemgetter(0)


def _row_cells(
    cells: list[str], columns: list[str | None], errors: list[dict[str, str]]
) -> dict[str, str]:
    """Map a record's cells to their columns, refusing formula-like and oversized cells."""
    # Most rows have no cell to look at: tell so with scans that run in C (map, filter, max),
    # since a Python loop over every cell was a fifth of the whole parse.
    if max(map(len, cells), default=0) <= MAX_CELL_CHARS and _SPECIAL_START.isdisjoint(
        map(_first_char, filter(None, cells))
    ):
        c = dict(zip(columns, cells, strict=False))
        c.pop(None, None)  # type: ignore[call-overload]  # ignored columns
        return c  # type: ignore[return-value]
    c = {}
    for name, raw in zip(columns, cells, strict=False):
        if name is None:
            continue
        if not raw:
            c[name] = raw
            continue
        first = raw[0]
        if len(raw) > MAX_CELL_CHARS:
            errors.append(
                {
                    "column": name,
                    "message": f"The cell holds {len(raw):,} characters; the limit is "
                    f"{MAX_CELL_CHARS:,}.",
                }
            )
            continue
        if first == "'":
            c[name] = unneutralise(raw)
        elif first in _FORMULA_START:
            errors.append(
                {
                    "column": name,
                    "message": f"The cell starts with {first!r} like a spreadsheet formula; "
                    "prefix it with ' if the value is meant literally.",
                }
            )
        else:
            c[name] = raw
    return c


def parse_row(
    line_no: int,
    cells: list[str],
    columns: list[str | None],
    *,
    default_operation: str = "upsert",
) -> ParsedRow:
    """Turn one CSV record into DPS enrollment JSON, collecting every error with its column.

    The common valid cells are accepted inline by the fast checks before any validator call:
    at a million rows each saved call is a second.
    """
    errors: list[dict[str, str]] = []
    if len(cells) != len(columns):
        errors.append(
            {
                "column": "",
                "message": f"The row has {len(cells)} fields but the header has {len(columns)}"
                + (" (is a quote left open?)." if len(cells) < len(columns) else "."),
            }
        )
    c = _row_cells(cells, columns, errors)

    def err(column: str, message: str) -> None:
        errors.append({"column": column, "message": message})

    def check(column: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            err(column, _message(exc))
            return None

    registration_id = c.get("registrationId", "").strip()
    operation = c.get("operation", "").strip().lower() or default_operation
    if operation not in OPERATIONS:
        err("operation", "The operation must be create, update, upsert or delete (or blank).")
        operation = default_operation
    if not (len(registration_id) <= v.MAX_ID_LENGTH and _FAST_ID.fullmatch(registration_id)):
        if check("registrationId", v.validate_registration_id, registration_id) is None:
            return ParsedRow(line_no, registration_id, operation, None, errors, c)
    payload: dict[str, Any] = {"registrationId": registration_id}
    if operation == "delete":
        etag = c.get("etag", "").strip()
        if etag:
            payload["etag"] = etag
        return ParsedRow(line_no, registration_id, operation, payload, errors, c)

    device_text = c.get("deviceId")
    if device_text:
        if _FAST_DEVICE_ID.fullmatch(device_text):
            payload["deviceId"] = device_text
        else:
            device_id = check("deviceId", v.validate_device_id, device_text)
            if device_id:
                payload["deviceId"] = device_id
    attestation = _attestation(c, err, check)
    if attestation is not None:
        payload["attestation"] = attestation
    _add_settings(c, payload, errors)
    tags = _twin_cell(c.get("twinTags"), "twinTags", "Twin tags", check)
    desired = _twin_cell(
        c.get("twinDesiredProperties"), "twinDesiredProperties", "Desired properties", check
    )
    if tags is not None or desired is not None:
        twin: dict[str, Any] = {}
        if tags is not None:
            twin["tags"] = tags
        if desired is not None:
            twin["properties"] = {"desired": desired}
        payload["initialTwin"] = twin
    info = _twin_cell(
        c.get("optionalDeviceInformation"),
        "optionalDeviceInformation",
        "Optional device information",
        check,
    )
    if info is not None:
        payload["optionalDeviceInformation"] = info
    etag = c.get("etag", "").strip()
    if etag:
        payload["etag"] = etag
    return ParsedRow(line_no, registration_id, operation, payload, errors, c)


def _add_settings(
    c: Mapping[str, str], payload: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    """Add the memoised fragment of the cells rows repeat (status, hubs, policies, IoT Edge)."""
    key = (
        c.get("provisioningStatus"),
        c.get("iotHubs", ""),
        c.get("iotHubHostName", ""),
        c.get("allocationPolicy"),
        c.get("webhookUrl"),
        c.get("webhookApiVersion"),
        c.get("reprovisionPolicy", ""),
        c.get("iotEdge", ""),
    )
    shared = _SETTINGS_MEMO.get(key)
    if shared is None:
        fragment, fragment_errors = _settings(*key)
        containers = tuple(n for n, x in fragment.items() if isinstance(x, (dict, list)))
        shared = (fragment, fragment_errors, containers)
        if len(_SETTINGS_MEMO) >= _MEMO_MAX:
            _SETTINGS_MEMO.clear()
        _SETTINGS_MEMO[key] = shared
    fragment, shared_errors, containers = shared
    if shared_errors:
        errors.extend(dict(e) for e in shared_errors)
    payload.update(fragment)
    for name in containers:
        # Rows share the memoised fragment: give each row its own containers.
        payload[name] = payload[name].copy()


_ATTESTATION_COLUMNS = (
    ("tpmEndorsementKey", "tpm"),
    ("tpmStorageRootKey", "tpm"),
    ("symmetricKeyPrimary", "symmetricKey"),
    ("symmetricKeySecondary", "symmetricKey"),
    ("x509CertificatePrimary", "x509"),
    ("x509CertificateSecondary", "x509"),
    ("x509CaReferencePrimary", "x509"),
    ("x509CaReferenceSecondary", "x509"),
)


#: Canonical attestation spellings, accepted without a validator call.
_KINDS = {t: t for t in ATTESTATION_TYPES if t != "none"}
#: Per attestation kind, the columns that belong to another kind.
_FOREIGN_COLUMNS = {
    kind: tuple((column, owner) for column, owner in _ATTESTATION_COLUMNS if owner != kind)
    for kind in _KINDS
}


def _attestation(c: Mapping[str, str], err: Any, check: Any) -> dict[str, Any] | None:
    kind_text = c.get("attestationType", "").strip()
    if not kind_text:
        err("attestationType", "Choose an attestation: tpm, x509 or symmetricKey.")
        return None
    kind = _KINDS.get(kind_text) or check(
        "attestationType", _memo, ("att", kind_text), v.validate_attestation_type, kind_text
    )
    if kind is None:
        return None
    for column, owner in _FOREIGN_COLUMNS[kind]:
        cell = c.get(column)
        if cell and cell.strip():
            err(
                column,
                f"This column belongs to {owner} attestation, but the row says {kind}.",
            )
    if kind == "tpm":
        ek = check("tpmEndorsementKey", v.validate_endorsement_key, c.get("tpmEndorsementKey"))
        srk = check("tpmStorageRootKey", v.validate_storage_root_key, c.get("tpmStorageRootKey"))
        if ek is None:
            return None
        tpm: dict[str, Any] = {"endorsementKey": ek}
        if srk:
            tpm["storageRootKey"] = srk
        return {"type": "tpm", "tpm": tpm}
    if kind == "symmetricKey":
        primary = c.get("symmetricKeyPrimary")
        if primary and not _fast_key(primary):
            primary = check("symmetricKeyPrimary", _symmetric_key, primary, "The primary key")
        secondary = c.get("symmetricKeySecondary")
        if secondary and not _fast_key(secondary):
            secondary = check(
                "symmetricKeySecondary", _symmetric_key, secondary, "The secondary key"
            )
        keys = {}
        if primary:
            keys["primaryKey"] = primary
        if secondary:
            keys["secondaryKey"] = secondary
        return {"type": "symmetricKey", "symmetricKey": keys}
    # x509: client certificates, or CA references, or (for an unchanged record) thumbprints.
    cert1 = c.get("x509CertificatePrimary", "").strip()
    cert2 = c.get("x509CertificateSecondary", "").strip()
    ca1 = c.get("x509CaReferencePrimary", "").strip()
    ca2 = c.get("x509CaReferenceSecondary", "").strip()
    thumb1 = c.get("x509ThumbprintPrimary", "").strip().upper()
    thumb2 = c.get("x509ThumbprintSecondary", "").strip().upper()
    if (cert1 or cert2) and (ca1 or ca2):
        err("x509CaReferencePrimary", "Give client certificates or CA references, not both.")
        return None
    if ca1 or ca2:
        if not ca1:
            err("x509CaReferencePrimary", "A secondary CA reference needs a primary one.")
            return None
        refs = {"primary": check("x509CaReferencePrimary", v.validate_ca_reference, ca1)}
        if ca2:
            refs["secondary"] = check("x509CaReferenceSecondary", v.validate_ca_reference, ca2)
        return {"type": "x509", "x509": {"caReferences": refs}}
    if not cert1:
        if cert2:
            err("x509CertificatePrimary", "A secondary certificate needs a primary one.")
            return None
        if thumb1:
            # Export writes thumbprints, DPS never returns certificates: the row can only be
            # compared, and is refused at preview if anything else about it changed.
            thumbs: dict[str, Any] = {"primary": {"info": {"sha256Thumbprint": thumb1}}}
            if thumb2:
                thumbs["secondary"] = {"info": {"sha256Thumbprint": thumb2}}
            return {"type": "x509", "x509": {"clientCertificates": thumbs}, "thumbprintOnly": True}
        err(
            "x509CertificatePrimary",
            "X.509 attestation needs a client certificate (PEM or base64) or a CA reference.",
        )
        return None
    certs: dict[str, Any] = {}
    for column, slot, text in (
        ("x509CertificatePrimary", "primary", cert1),
        ("x509CertificateSecondary", "secondary", cert2),
    ):
        if not text:
            continue
        info = check(column, v.validate_certificate, text)
        if info is not None:
            certs[slot] = {
                "certificate": text,
                "info": {"sha256Thumbprint": info.sha256_thumbprint},
            }
    if "primary" not in certs:
        return None
    return {"type": "x509", "x509": {"clientCertificates": certs}}


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


#
# DPS JSON → rows (export, diff)
#


def dps_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON to send to DPS for a parsed row (without import-only markers)."""
    out = json.loads(json.dumps(payload))
    att = out.get("attestation")
    if isinstance(att, dict):
        att.pop("thumbprintOnly", None)
        x = att.get("x509") or {}
        for slot in (x.get("clientCertificates") or {}).values():
            if isinstance(slot, dict):
                slot.pop("info", None)
    out.pop("etag", None)
    return out


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


def _reprovision_text(policy: Mapping[str, Any] | None) -> str:
    if not policy:
        return ""
    pair = (bool(policy.get("updateHubAssignment")), bool(policy.get("migrateDeviceData")))
    for name, values in v.REPROVISION_CHOICES.items():
        if values == pair:
            return name
    return f"updateHubAssignment={_bool_text(pair[0])};migrateDeviceData={_bool_text(pair[1])}"


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def enrollment_to_row(
    enrollment: Mapping[str, Any], *, keys: Mapping[str, Any] | None = None, operation: str = ""
) -> dict[str, str]:
    """Return the CSV cells (unneutralised) of DPS enrollment JSON.

    ``keys`` is the symmetric-key attestation read through the attestation-mechanism call;
    keys are written only when it is given.
    """
    row = dict.fromkeys(COLUMNS, "")
    row["operation"] = operation
    row["registrationId"] = str(enrollment.get("registrationId") or "")
    row["deviceId"] = str(enrollment.get("deviceId") or "")
    row["provisioningStatus"] = str(enrollment.get("provisioningStatus") or "enabled")
    att = enrollment.get("attestation") or {}
    kind = str(att.get("type") or "")
    row["attestationType"] = kind
    if kind == "tpm":
        tpm = att.get("tpm") or {}
        row["tpmEndorsementKey"] = str(tpm.get("endorsementKey") or "")
        row["tpmStorageRootKey"] = str(tpm.get("storageRootKey") or "")
    elif kind == "symmetricKey" and keys:
        row["symmetricKeyPrimary"] = str(keys.get("primaryKey") or "")
        row["symmetricKeySecondary"] = str(keys.get("secondaryKey") or "")
    elif kind == "x509":
        x = att.get("x509") or {}
        certs = x.get("clientCertificates") or {}
        refs = x.get("caReferences") or {}
        for slot, cert_col, thumb_col in (
            ("primary", "x509CertificatePrimary", "x509ThumbprintPrimary"),
            ("secondary", "x509CertificateSecondary", "x509ThumbprintSecondary"),
        ):
            entry = certs.get(slot) or {}
            row[cert_col] = str(entry.get("certificate") or "")
            row[thumb_col] = str((entry.get("info") or {}).get("sha256Thumbprint") or "").upper()
        row["x509CaReferencePrimary"] = str(refs.get("primary") or "")
        row["x509CaReferenceSecondary"] = str(refs.get("secondary") or "")
    row["iotHubs"] = " ".join(enrollment.get("iotHubs") or [])
    row["iotHubHostName"] = str(enrollment.get("iotHubHostName") or "")
    row["allocationPolicy"] = str(enrollment.get("allocationPolicy") or "")
    custom = enrollment.get("customAllocationDefinition") or {}
    row["webhookUrl"] = str(custom.get("webhookUrl") or "")
    row["webhookApiVersion"] = str(custom.get("apiVersion") or "")
    row["reprovisionPolicy"] = _reprovision_text(enrollment.get("reprovisionPolicy"))
    caps = enrollment.get("capabilities")
    row["iotEdge"] = _bool_text(caps.get("iotEdge")) if caps else ""
    twin = enrollment.get("initialTwin") or {}
    row["twinTags"] = _json_text(twin.get("tags"))
    row["twinDesiredProperties"] = _json_text((twin.get("properties") or {}).get("desired"))
    row["optionalDeviceInformation"] = _json_text(enrollment.get("optionalDeviceInformation"))
    row["etag"] = str(enrollment.get("etag") or "")
    return row


#: Columns compared by the preview (certificates go by thumbprint; keys only when both known).
DIFF_COLUMNS = tuple(
    c for c in COLUMNS if c not in ("operation", "etag", *CERT_COLUMNS, *KEY_COLUMNS)
)
_DEFAULTS = {"iotEdge": "false", "provisioningStatus": "enabled", "allocationPolicy": "hashed"}


def row_diff(
    current: Mapping[str, str], desired: Mapping[str, str], *, compare_keys: bool = False
) -> dict[str, list[str]]:
    """Return ``{column: [current, desired]}`` for every column that differs."""
    columns: Iterable[str] = DIFF_COLUMNS + (KEY_COLUMNS if compare_keys else ())
    out: dict[str, list[str]] = {}
    for column in columns:
        if column in KEY_COLUMNS and not desired.get(column):
            continue  # a blank key means "keep the key DPS holds"
        a = current.get(column, "") or _DEFAULTS.get(column, "")
        b = desired.get(column, "") or _DEFAULTS.get(column, "")
        if column in ("twinTags", "twinDesiredProperties", "optionalDeviceInformation"):
            a = _canonical_json(a)
            b = _canonical_json(b)
        if a != b:
            out[column] = [a, b]
    return out


def _canonical_json(text: str) -> str:
    if not text:
        return ""
    try:
        return _json_text(json.loads(text))
    except ValueError:
        return text


class _Echo:
    """A file-like object whose ``write`` returns the line, for streaming responses."""

    def write(self, value: str) -> str:
        return value


def csv_line(cells: Iterable[str], *, delimiter: str = ",") -> str:
    """Return one CSV line (with CRLF) of neutralised cells."""
    writer = csv.writer(_Echo(), delimiter=delimiter, lineterminator="\r\n")
    return writer.writerow([neutralise(str(cell)) for cell in cells])


def write_rows(out: IO[str], rows: Iterable[Mapping[str, str]], *, header: bool = True) -> int:
    """Write the header and rows in the canonical column order; return the row count."""
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([neutralise(row.get(c, "")) for c in COLUMNS])
        count += 1
    return count
