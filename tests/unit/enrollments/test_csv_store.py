"""COPY text encoding of stored CSV rows: every value PostgreSQL reads back unchanged."""

from __future__ import annotations

import json
import re

import pytest

from enrollments.bulk.chunks import copy_text
from enrollments.bulk.chunks import dumps as _dumps

_ESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def copy_field_decode(field: str) -> str:
    """Decode one COPY text field the way PostgreSQL does for the escapes copy_text writes."""
    return re.sub(r"\\[\\tnr]", lambda m: _ESCAPES[m.group(0)], field)


@pytest.mark.parametrize(
    "value",
    [
        "device-1",
        "",
        "back\\slash",
        "tab\there",
        "multi\nline\r\nrow",
        '{"n":"\\\\"}',
        "\\t literally",
        "Zürich ✓",
    ],
)
def test_copy_text_round_trips_through_copy_decoding(value):
    encoded = copy_text(value)
    assert copy_field_decode(encoded) == value
    # A field may hold no raw separator: a tab or newline would split the row.
    assert not set(encoded) & {"\t", "\n", "\r"}


def test_copy_text_leaves_a_clean_value_alone():
    assert copy_text("upsert") == "upsert"
    assert copy_text('{"registrationId":"dev-1"}') == '{"registrationId":"dev-1"}'


@pytest.mark.parametrize(
    "value",
    [
        {"registrationId": "dev-1", "iotHubs": ["a", "b"], "capabilities": {"iotEdge": False}},
        [{"column": "twinTags", "message": 'Twin tags: not valid JSON ("x").'}],
        {"n": 1.5, "big": 10**30, "none": None, "text": 'Zürich "\\ \n \u2028'},
        {"nan": float("nan"), "inf": float("inf")},
        [],
    ],
)
def test_stored_json_is_what_the_standard_encoder_writes(value):
    standard = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    assert _dumps(value) == standard(value)


def test_stored_json_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        _dumps({"when": object()})
