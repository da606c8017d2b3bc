"""Input limits of the CSV reader: row length, fields per row, NUL bytes, unclosed quotes."""

from __future__ import annotations

import codecs
import csv
import io
import json
import tracemalloc

import pytest

from enrollments.csv.columns import COLUMNS, neutralise
from enrollments.csv.export import write_rows
from enrollments.csv.reader import MAX_COLUMNS, MAX_ROW_BYTES, CsvFormatError, read_rows

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
HEADER = "registrationId,attestationType,symmetricKeyPrimary,iotEdge,twinTags\r\n"
GOOD = f"dev-{{}},symmetricKey,{KEY},true,\r\n"


def rows_of(data: bytes, **kw):
    return list(read_rows(io.BytesIO(data), **kw))


def messages(row) -> list[str]:
    return [e["message"] for e in row.errors]


#
# Row length and fields per row
#


def test_a_19_mb_line_of_commas_is_a_row_error_and_memory_stays_flat():
    commas = "," * (19 * 1024 * 1024)
    data = (HEADER + f"dev-1{commas}\r\n" + GOOD.format(2)).encode()
    tracemalloc.start()
    try:
        rows = rows_of(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.line_no for r in rows] == [2, 3]
    limit = MAX_ROW_BYTES
    assert messages(rows[0]) == [
        f"Line 2 is longer than {limit:,} bytes, the limit of one row; the rest of it is not read."
    ]
    assert rows[1].errors == []
    # The line is refused by its length before the CSV reader splits it: the field list of
    # 19 million cells alone would take 150 MB; the line itself is never held whole.
    assert peak < 4 * 1024 * 1024, peak


def test_the_row_length_limit_is_configurable():
    data = (HEADER + GOOD.format(1) + f"dev-2,symmetricKey,{KEY},true,{'x' * 200}\r\n").encode()
    rows = rows_of(data, max_row_bytes=100)
    assert rows[0].errors == []
    assert messages(rows[1]) == [
        "Line 3 is longer than 100 bytes, the limit of one row; the rest of it is not read."
    ]


def _pem_rsa4096() -> str:
    from tests.support.certs import certificate, pem, rsa_key

    return pem(certificate("device-with-a-long-name-" * 2, key=rsa_key(4096), days=365).cert)


def test_a_legitimate_large_row_fits_the_default_limits():
    """Two PEM certificates (RSA 4096) and twin tags, desired properties and device information
    near their 32 KB limit, quote-dense so that the CSV doubles many quotes, fit."""
    pem = _pem_rsa4096()
    twin = {f"k{i:05d}": f"v{i}" for i in range(1900)}  # about 31 KB of JSON, a third quotes
    text = json.dumps(twin, separators=(",", ":"))
    assert 28_000 < len(text) < 32 * 1024
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        registrationId="dev-big",
        attestationType="x509",
        x509CertificatePrimary=pem,
        x509CertificateSecondary=pem,
        twinTags=text,
        twinDesiredProperties=text,
        optionalDeviceInformation=text,
    )
    out = io.StringIO()
    write_rows(out, [row])
    data = out.getvalue().encode()
    assert len(data) > 110_000  # more than DPS's 96 KB request, with the doubled quotes
    (parsed,) = rows_of(data)
    assert parsed.errors == []
    assert parsed.payload["initialTwin"]["tags"] == twin


def test_a_row_with_more_fields_than_the_limit_is_refused_with_its_line():
    over = MAX_COLUMNS + 1
    data = (HEADER + GOOD.format(1) + "dev-2" + "," * (over - 1) + "\r\n").encode()
    rows = rows_of(data)
    assert rows[0].errors == []
    assert messages(rows[1]) == [
        f"Line 3 has {over} fields; the limit is {MAX_COLUMNS} (the header has 5)."
    ]


def test_the_field_limit_leaves_room_over_the_template():
    assert MAX_COLUMNS >= len(COLUMNS) + 20


def test_a_header_over_the_limits_is_refused():
    wide = ",".join(["registrationId", *[f"x{i}" for i in range(100)]]) + "\n"
    with pytest.raises(CsvFormatError, match="The header has 101 columns; the limit is 64"):
        rows_of(wide.encode())
    long = "registrationId," + " " * 300 + "\n"
    with pytest.raises(CsvFormatError, match="The header line is longer than 100 bytes"):
        rows_of(long.encode(), max_row_bytes=100)


#
# NUL bytes
#


def test_a_nul_byte_past_the_first_4_kb_is_a_row_error_naming_line_and_character():
    body = "".join(GOOD.format(i) for i in range(200))
    data = (
        HEADER + body + f"dev-x,symmetricKey,{KEY},true,\r\n".replace("dev-x", "de\x00v")
    ).encode()
    assert data.index(b"\x00") > 4096
    rows = rows_of(data)
    assert len(rows) == 201
    assert all(r.errors == [] for r in rows[:200])
    bad = rows[200]
    assert bad.line_no == 202
    assert messages(bad) == [
        "Line 202 contains a NUL byte (\\x00) at character 3; the file is probably not plain "
        "text there."
    ]
    assert "\x00" not in bad.registration_id


def test_a_nul_byte_in_a_utf16_file_is_a_row_error_too():
    text = HEADER + GOOD.format(1) + "dev-2,symmetricKey,,true,\x00\r\n" + GOOD.format(3)
    rows = rows_of(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert [r.line_no for r in rows] == [2, 3, 4]
    assert messages(rows[1]) == [
        "Line 3 contains a NUL byte (\\x00) at character 26; the file is probably not plain "
        "text there."
    ]
    assert rows[2].errors == []


#
# Unclosed quotes
#


def test_an_unclosed_quote_names_its_line_and_the_line_it_ran_into():
    data = (
        HEADER
        + f'dev-1,symmetricKey,{KEY},true,"{{""a"":1}}\r\n'  # the closing quote is missing
        + f'dev-2,symmetricKey,{KEY},true,"{{""b"":2}}"\r\n'
        + GOOD.format(3)
    ).encode()
    rows = rows_of(data)
    assert [r.line_no for r in rows] == [2, 3, 4]
    assert messages(rows[0]) == ["The quote opened on line 2 is not closed; it ran into line 3."]
    # The lines it ran into are read again as rows of their own: nothing is lost.
    assert rows[1].errors == []
    assert rows[1].payload["initialTwin"]["tags"] == {"b": 2}
    assert rows[2].errors == []


def test_an_unclosed_quote_running_to_the_end_of_the_file():
    data = (HEADER + 'dev-8,"open,true,\r\n' + GOOD.format(9) + GOOD.format(10)).encode()
    rows = rows_of(data)
    assert [r.line_no for r in rows] == [2, 3, 4]
    assert messages(rows[0]) == [
        "The quote opened on line 2 is not closed; it ran to the end of the file (line 4)."
    ]
    assert rows[1].errors == []
    assert rows[2].errors == []


def test_an_unclosed_quote_over_the_row_limit_names_the_line_it_ran_into():
    data = HEADER + 'dev-1,"open,true,\r\n' + "".join(GOOD.format(i) for i in range(2, 40))
    rows = rows_of(data.encode(), max_row_bytes=1000)
    assert messages(rows[0]) == [
        "The quote opened on line 2 is not closed; it ran into line 16 and past 1,000 bytes."
    ]
    assert [r.line_no for r in rows] == list(range(2, 41))
    assert all(r.errors == [] for r in rows[1:])


def test_text_after_a_closing_quote_is_a_row_error():
    data = (HEADER + 'dev-1,"symmetric"Key,,true,\r\n' + GOOD.format(2)).encode()
    rows = rows_of(data)
    assert messages(rows[0]) == [
        "Line 2 has text after the closing quote of a cell; write a quote inside a quoted "
        'cell twice ("").'
    ]
    assert rows[1].errors == []
    assert rows[1].line_no == 3


def test_a_quoted_multi_line_pem_is_still_one_row():
    pem = _pem_rsa4096()
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [
            ["registrationId", "attestationType", "x509CertificatePrimary"],
            ["dev-1", "x509", neutralise(pem)],
        ]
    )
    data = (out.getvalue() + "dev-2,x509,\r\n").encode()
    rows = rows_of(data)
    assert rows[0].errors == []
    assert rows[1].line_no == 3 + pem.count("\n")
