"""The CSV format: encodings, delimiters, headers, per-row errors, neutralisation, round trip."""

from __future__ import annotations

import codecs
import io
import json

import pytest

from enrollments.csv.columns import COLUMNS, neutralise, unneutralise
from enrollments.csv.diff import row_diff
from enrollments.csv.export import enrollment_to_row, write_rows
from enrollments.csv.reader import CsvFormatError, read_rows

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes, base64
HEADER = "registrationId,attestationType,symmetricKeyPrimary,iotEdge,twinTags\r\n"


def rows_of(data: bytes, **kw):
    return list(read_rows(io.BytesIO(data), **kw))


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
)
def test_reads_utf8_with_and_without_bom_and_utf16_with_bom(encoding, bom):
    text = HEADER + f'dev-1,symmetricKey,{KEY},true,"{{""site"":""Zürich""}}"\r\n'
    rows = rows_of(bom + text.encode(encoding))
    assert len(rows) == 1
    assert rows[0].errors == []
    assert rows[0].payload["initialTwin"]["tags"] == {"site": "Zürich"}
    assert rows[0].payload["capabilities"] == {"iotEdge": True}
    assert rows[0].payload["attestation"]["symmetricKey"]["primaryKey"] == KEY


def test_semicolon_delimiter_and_header_case_and_spaces():
    data = b"Registration ID ; ATTESTATION_type;symmetric key primary\ndev-2;symmetricKey;\n"
    rows = rows_of(data)
    assert rows[0].registration_id == "dev-2"
    assert rows[0].errors == []
    assert rows[0].payload["attestation"] == {"type": "symmetricKey", "symmetricKey": {}}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"dev-1,symmetricKey\n", "header"),
        (b"registrationId\tattestationType\ndev\tx509\n", "tabs"),
        (codecs.BOM_UTF32_LE + "registrationId\n".encode("utf-32-le"), "UTF-32"),
        ("registrationId,attestationType\n".encode("utf-16-le"), "UTF-16 without"),
        (b"registrationId,attestationType\ndev-1,tpm\n\xff\xfe\xfa bad\n", "not valid UTF-8"),
        (bytes(range(256)) * 20, "binary"),
        (b"registrationId,colour\ndev,red\n", "Unknown column 'colour'"),
        (b"registrationId,registration_id\n", "appears twice"),
    ],
)
def test_bad_files_get_one_clear_error(data, fragment):
    with pytest.raises(CsvFormatError, match=fragment):
        rows_of(data)


def test_latin1_file_names_the_line():
    data = "registrationId,deviceId\ndev-1,caf\xe9\n".encode("latin-1")
    with pytest.raises(CsvFormatError, match=r"Line 2 is not valid UTF-8"):
        rows_of(data)


def test_per_row_errors_name_line_and_column():
    data = (
        HEADER
        + "bad id!,symmetricKey,,,\r\n"
        + "dev-3,symmetricKey,not-base64!!,maybe,{broken\r\n"
        + "dev-4,tpm,,,\r\n"
    ).encode()
    rows = rows_of(data)
    assert rows[0].line_no == 2
    assert rows[0].errors[0]["column"] == "registrationId"
    by_col = {e["column"]: e["message"] for e in rows[1].errors}
    assert rows[1].line_no == 3
    assert set(by_col) == {"symmetricKeyPrimary", "iotEdge", "twinTags"}
    assert "base64" in by_col["symmetricKeyPrimary"]
    assert {e["column"] for e in rows[2].errors} == {"tpmEndorsementKey"}


def test_formula_cells_are_refused_per_row():
    data = b'registrationId,deviceId,attestationType\ndev-5,"=HYPERLINK(""http://x"",""y"")",symmetricKey\n'
    (row,) = rows_of(data)
    assert row.errors[0]["column"] == "deviceId"
    assert "formula" in row.errors[0]["message"]


def test_ten_megabyte_cell_is_a_row_error_not_a_crash():
    big = "a" * (10 * 1024 * 1024)
    data = (
        f"registrationId,twinTags,attestationType\ndev-6,{big},symmetricKey\ndev-7,,symmetricKey\n"
    )
    rows = rows_of(data.encode())
    assert "longer than 262,144 bytes" in rows[0].errors[0]["message"]
    assert rows[1].errors == []


def test_a_cell_over_the_cell_limit_is_a_row_error():
    big = "a" * 100_000  # over the 64 K characters of a cell, under the row limit
    data = (
        f"registrationId,twinTags,attestationType\ndev-6,{big},symmetricKey\ndev-7,,symmetricKey\n"
    )
    rows = rows_of(data.encode())
    assert "characters" in rows[0].errors[0]["message"]
    assert rows[1].errors == []


def test_unclosed_quote_is_reported():
    data = (
        b'registrationId,deviceId,attestationType\ndev-8,"open,symmetricKey\ndev-9,x,symmetricKey\n'
    )
    rows = rows_of(data)
    assert rows[0].errors
    assert "quote" in rows[0].errors[0]["message"]


def test_row_limit():
    data = ("registrationId,attestationType\n" + "".join(f"d{i},tpm\n" for i in range(5))).encode()
    with pytest.raises(CsvFormatError, match="more than 3 rows"):
        rows_of(data, max_rows=3)


def test_unknown_operation_and_delete_rows():
    data = b"operation,registrationId\ndrop,dev-1\nDELETE,dev-2\n"
    rows = rows_of(data)
    assert rows[0].errors[0]["column"] == "operation"
    assert rows[1].operation == "delete"
    assert rows[1].errors == []


@pytest.mark.parametrize(
    "value", ["=1+2", "+cmd", "-x", "@SUM(A1)", "'=a", "''+b", "\tx", "plain", "", "'quoted"]
)
def test_neutralise_round_trips_every_value(value):
    cell = neutralise(value)
    assert cell[:1] not in ("=", "+", "-", "@", "\t")
    assert unneutralise(cell) == value


def test_export_then_import_round_trips():
    enrollment = {
        "registrationId": "dev-rt",
        "deviceId": "-odd=device@",
        "attestation": {"type": "symmetricKey"},
        "provisioningStatus": "disabled",
        "iotHubs": ["a-hub.azure-devices.net", "b-hub.azure-devices.net"],
        "allocationPolicy": "custom",
        "customAllocationDefinition": {
            "webhookUrl": "https://fn.example.net/api/alloc?code=1",
            "apiVersion": "2021-10-01",
        },
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": True},
        "capabilities": {"iotEdge": True},
        "initialTwin": {"tags": {"b": 1, "a": "=x"}, "properties": {"desired": {"p": [1, 2]}}},
        "optionalDeviceInformation": {"k": "v"},
        "etag": "ImV0YWci",
    }
    keys = {"primaryKey": KEY, "secondaryKey": KEY}
    out = io.StringIO()
    write_rows(out, [enrollment_to_row(enrollment, keys=keys)])
    (row,) = rows_of(out.getvalue().encode())
    assert row.errors == []
    back = enrollment_to_row(row.payload, keys=row.payload["attestation"]["symmetricKey"])
    original = enrollment_to_row(enrollment, keys=keys)
    assert row_diff(original, back, compare_keys=True) == {}
    assert back["deviceId"] == "-odd=device@"
    assert json.loads(back["twinTags"]) == {"a": "=x", "b": 1}
    assert back["etag"] == "ImV0YWci"


def test_header_written_in_canonical_order():
    out = io.StringIO()
    write_rows(out, [])
    assert out.getvalue().strip().split(",") == list(COLUMNS)


def test_diff_lists_changed_columns_only():
    a = enrollment_to_row(
        {"registrationId": "d", "attestation": {"type": "tpm"}, "iotHubs": ["h.x.net"]}
    )
    b = enrollment_to_row(
        {"registrationId": "d", "attestation": {"type": "tpm"}, "provisioningStatus": "disabled"}
    )
    assert row_diff(a, b) == {
        "provisioningStatus": ["enabled", "disabled"],
        "iotHubs": ["h.x.net", ""],
    }


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("registrationId", "a"),
        ("registrationId", "dev-"),
        ("registrationId", "dev."),
        ("registrationId", ".dev"),
        ("registrationId", "x" * 128),
        ("registrationId", "x" * 129),
        ("registrationId", "dév"),
        ("deviceId", "d$'(x)"),
        ("deviceId", "d e"),
        ("deviceId", "d" * 129),
        ("symmetricKeyPrimary", "QUJDREVGR0hJSktMTU5PUA=="),  # 16 bytes
        ("symmetricKeyPrimary", "QUJDREVGR0hJSktMTU5P"),  # 15 bytes
        ("symmetricKeyPrimary", "QUJD REVG R0hJ SktM TU5P UA=="),  # spaces are dropped
        ("symmetricKeyPrimary", "QUJDREVGR0hJSktMTU5PUA="),  # bad padding
        ("symmetricKeyPrimary", "A" * 88),  # 66 bytes
        ("twinTags", '{"a.b": 1}'),
        ("twinTags", '{"a$": 1}'),
        ("twinTags", '{"ok": {"nested": [1, 2]}}'),
        ("twinTags", "[1]"),
        ("twinTags", '{"k": "' + "é" * 3000 + '"}'),
    ],
)
def test_fast_paths_agree_with_the_shared_validators(column, value):
    """Each cell gives the same payload and errors as the validators of enrollments.validation."""
    from django.core.exceptions import ValidationError

    from enrollments import validation as v

    validators = {
        "registrationId": v.validate_registration_id,
        "deviceId": v.validate_device_id,
        "symmetricKeyPrimary": lambda x: v.validate_symmetric_key(x, "The primary key"),
        "twinTags": lambda x: v.parse_twin_json(x, "Twin tags"),
    }
    try:
        expected, expected_error = validators[column](value), ""
    except ValidationError as exc:
        expected, expected_error = None, " ".join(exc.messages)
    cells = {"registrationId": "dev-1", "attestationType": "symmetricKey", column: value}
    header = ",".join(cells)
    line = ",".join('"' + c.replace('"', '""') + '"' for c in cells.values())
    (row,) = rows_of(f"{header}\r\n{line}\r\n".encode())
    errors = [e["message"] for e in row.errors if e["column"] == column]
    assert errors == ([expected_error] if expected_error else [])
    if expected_error or row.payload is None:
        return
    got = {
        "registrationId": row.payload["registrationId"],
        "deviceId": row.payload.get("deviceId"),
        "symmetricKeyPrimary": row.payload["attestation"]["symmetricKey"].get("primaryKey"),
        "twinTags": (row.payload.get("initialTwin") or {}).get("tags"),
    }[column]
    assert got == expected


def test_repeated_cells_are_checked_on_every_row_and_rows_do_not_share_containers():
    """Memoised cells still give each row its error, and each row its own hub list."""
    head = "registrationId,attestationType,provisioningStatus,iotHubs\r\n"
    body = "".join(f"d{i},symmetricKey,maybe,hub-a.azure-devices.net\r\n" for i in range(3))
    body += "".join(f"e{i},symmetricKey,enabled,hub-a.azure-devices.net\r\n" for i in range(2))
    rows = rows_of((head + body).encode())
    bad = [[e["column"] for e in r.errors] for r in rows[:3]]
    assert bad == [["provisioningStatus"]] * 3
    assert not rows[3].errors
    rows[3].payload["iotHubs"].append("changed")
    assert rows[4].payload["iotHubs"] == ["hub-a.azure-devices.net"]


def test_empty_header_cells_are_ignored_however_many():
    data = b"registrationId,,attestationType,\r\ndev-1,x,symmetricKey,y\r\n"
    (row,) = rows_of(data)
    assert row.errors == []
    assert row.cells == {"registrationId": "dev-1", "attestationType": "symmetricKey"}
