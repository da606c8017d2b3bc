"""Turn one CSV record into DPS enrollment JSON plus a list of per-column errors.

Cells are checked with the field validators of :mod:`enrollments.validation`, behind the fast
paths of :mod:`enrollments.csv.fast`; the attestation columns are read by
:mod:`enrollments.csv.attestation`. The cells most rows repeat (status, hubs, allocation,
reprovision policy, IoT Edge) are checked once per distinct combination.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from enrollments import validation as v
from enrollments.csv.attestation import attestation_of
from enrollments.csv.columns import FORMULA_START, OPERATIONS, unneutralise
from enrollments.csv.fast import (
    MEMO_MAX,
    PLAIN_DEVICE_ID,
    PLAIN_ID,
    hubs,
    memo,
    plain_twin,
    twin_json,
)
from enrollments.csv.row import ParsedRow, RowError, add_error, check

#: A cell longer than this is refused (DPS's own message limit is 96 KB).
MAX_CELL_CHARS = 64 * 1024

Cells = Mapping[str, str]
Payload = dict[str, Any]

#: A cell starting with one of these needs a look (a formula, or an export's neutralising quote).
_SPECIAL_START = frozenset("'") | FORMULA_START
_first_char = operator.itemgetter(0)
_MAX_ID_LENGTH = v.MAX_ID_LENGTH


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
    errors: list[RowError] = []
    if len(cells) != len(columns):
        add_error(errors, "", _field_count_message(len(cells), len(columns)))
    c = _row_cells(cells, columns, errors)
    registration_id = c.get("registrationId", "").strip()
    operation = c.get("operation", "").strip().lower() or default_operation
    if operation not in OPERATIONS:
        add_error(
            errors,
            "operation",
            "The operation must be create, update, upsert or delete (or blank).",
        )
        operation = default_operation
    if not (len(registration_id) <= _MAX_ID_LENGTH and PLAIN_ID.fullmatch(registration_id)):
        if check(errors, "registrationId", v.validate_registration_id, registration_id) is None:
            return ParsedRow(line_no, registration_id, operation, None, errors, c)
    payload: Payload = {"registrationId": registration_id}
    if operation != "delete":
        _add_record(c, payload, errors)
    etag = c.get("etag", "").strip()
    if etag:
        payload["etag"] = etag
    return ParsedRow(line_no, registration_id, operation, payload, errors, c)


def _field_count_message(cells: int, columns: int) -> str:
    hint = " (is a quote left open?)." if cells < columns else "."
    return f"The row has {cells} fields but the header has {columns}{hint}"


def _row_cells(
    cells: list[str], columns: list[str | None], errors: list[RowError]
) -> dict[str, str]:
    """Map a record's cells to their columns, refusing formula-like and oversized cells."""
    # Most rows have no cell to look at: tell so with scans that run in C (map, filter, max),
    # since a Python loop over every cell was a fifth of the whole parse.
    if max(map(len, cells), default=0) <= MAX_CELL_CHARS and _SPECIAL_START.isdisjoint(
        map(_first_char, filter(None, cells))
    ):
        mapped: dict[Any, str] = dict(zip(columns, cells, strict=False))
        mapped.pop(None, None)  # ignored columns
        return mapped
    c: dict[str, str] = {}
    for name, raw in zip(columns, cells, strict=False):
        if name is not None:
            _add_special_cell(c, name, raw, errors)
    return c


def _add_special_cell(c: dict[str, str], name: str, raw: str, errors: list[RowError]) -> None:
    """Add a cell of a row that has a long or formula-like cell, or a neutralised one."""
    if not raw:
        c[name] = raw
    elif len(raw) > MAX_CELL_CHARS:
        add_error(
            errors,
            name,
            f"The cell holds {len(raw):,} characters; the limit is {MAX_CELL_CHARS:,}.",
        )
    elif raw[0] == "'":
        c[name] = unneutralise(raw)
    elif raw[0] in FORMULA_START:
        add_error(
            errors,
            name,
            f"The cell starts with {raw[0]!r} like a spreadsheet formula; "
            "prefix it with ' if the value is meant literally.",
        )
    else:
        c[name] = raw


def _add_record(c: Cells, payload: Payload, errors: list[RowError]) -> None:
    """Add what a create, update or upsert sends: device id, attestation, settings, twin."""
    device_text = c.get("deviceId")
    if device_text:
        if PLAIN_DEVICE_ID.fullmatch(device_text):
            payload["deviceId"] = device_text
        else:
            device_id = check(errors, "deviceId", v.validate_device_id, device_text)
            if device_id:
                payload["deviceId"] = device_id
    attestation = attestation_of(c, errors)
    if attestation is not None:
        payload["attestation"] = attestation
    _add_settings(c, payload, errors)
    _add_twin(c, payload, errors)


def _add_twin(c: Cells, payload: Payload, errors: list[RowError]) -> None:
    """Add the initial twin and the optional device information."""
    tags = _twin_cell(c.get("twinTags"), "twinTags", "Twin tags", errors)
    desired = _twin_cell(
        c.get("twinDesiredProperties"), "twinDesiredProperties", "Desired properties", errors
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
        errors,
    )
    if info is not None:
        payload["optionalDeviceInformation"] = info


def _twin_cell(
    value: str | None, column: str, label: str, errors: list[RowError]
) -> dict[str, Any] | None:
    """Return the twin object of a cell (None when blank or invalid, the error recorded)."""
    if not value:
        return None
    data = plain_twin(value)
    if data is not None:
        return data
    return check(errors, column, twin_json, value, label)


#
# The cells rows repeat
#

#: Per distinct settings cells: the payload fragment, its errors, and the names of its values
#: that are containers (each row gets its own copy of those).
_SETTINGS_MEMO: dict[tuple[Any, ...], tuple[Payload, list[RowError], tuple[str, ...]]] = {}


def _add_settings(c: Cells, payload: Payload, errors: list[RowError]) -> None:
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
        if len(_SETTINGS_MEMO) >= MEMO_MAX:
            _SETTINGS_MEMO.clear()
        _SETTINGS_MEMO[key] = shared
    fragment, shared_errors, containers = shared
    if shared_errors:
        errors.extend(dict(e) for e in shared_errors)
    payload.update(fragment)
    for name in containers:
        # Rows share the memoised fragment: give each row its own containers.
        payload[name] = payload[name].copy()


def _settings(
    status_text: str | None,
    hubs_text: str,
    legacy_text: str,
    policy_text: str | None,
    webhook_text: str | None,
    api_text: str | None,
    reprovision_text: str,
    edge_text: str,
) -> tuple[Payload, list[RowError]]:
    """Check the cells most rows repeat; return the payload fragment and the errors.

    :func:`_add_settings` memoises the result per distinct combination of cells.
    """
    payload: Payload = {}
    errors: list[RowError] = []
    status = check(
        errors,
        "provisioningStatus",
        memo,
        ("status", status_text),
        v.validate_provisioning_status,
        status_text,
    )
    if status:
        payload["provisioningStatus"] = status
    alloc_hubs = _add_hubs(payload, errors, hubs_text, legacy_text)
    _add_allocation(payload, errors, policy_text, alloc_hubs, webhook_text, api_text)
    if reprovision_text.strip():
        policy = check(
            errors,
            "reprovisionPolicy",
            memo,
            ("rp", reprovision_text),
            _reprovision,
            reprovision_text,
        )
        if policy:
            payload["reprovisionPolicy"] = dict(policy)
    if edge_text.strip():
        edge = check(errors, "iotEdge", memo, ("edge", edge_text), v.validate_iot_edge, edge_text)
        if edge is not None:
            payload["capabilities"] = {"iotEdge": edge}
    return payload, errors


def _add_hubs(
    payload: Payload, errors: list[RowError], hubs_text: str, legacy_text: str
) -> list[str]:
    """Add ``iotHubs`` and the legacy ``iotHubHostName``; return the hubs allocation sees."""
    listed = list(check(errors, "iotHubs", memo, ("hubs", hubs_text), hubs, hubs_text) or ())
    if listed:
        payload["iotHubs"] = listed
    legacy = legacy_text.strip()
    if legacy:
        hub = check(errors, "iotHubHostName", v.validate_iot_hub_host_name, legacy)
        if hub:
            payload["iotHubHostName"] = hub
    return listed or ([legacy] if legacy else [])


#: The column of each input of ``validate_allocation``, to put its errors on.
_ALLOCATION_COLUMNS = {
    "policy": "allocationPolicy",
    "webhook_url": "webhookUrl",
    "api_version": "webhookApiVersion",
}


def _add_allocation(
    payload: Payload,
    errors: list[RowError],
    policy_text: str | None,
    alloc_hubs: list[str],
    webhook_text: str | None,
    api_text: str | None,
) -> None:
    key = ("alloc", policy_text, tuple(alloc_hubs), webhook_text, api_text)
    try:
        policy, custom = memo(
            key,
            v.validate_allocation,
            policy_text,
            iot_hubs=alloc_hubs,
            webhook_url=webhook_text,
            api_version=api_text,
        )
    except ValidationError as exc:
        column = _ALLOCATION_COLUMNS[v.allocation_error_input(exc)]
        add_error(errors, column, " ".join(exc.messages))
        return
    if policy:
        payload["allocationPolicy"] = policy
    if custom:
        payload["customAllocationDefinition"] = custom.to_json()


_REPROVISION_RAW = re.compile(
    r"^\s*updatehubassignment\s*=\s*(true|false)\s*[,;\s]\s*migratedevicedata\s*=\s*(true|false)\s*$",
    re.IGNORECASE,
)


def _reprovision(value: str) -> dict[str, bool] | None:
    """Return the policy of a named choice or of ``updateHubAssignment=…;migrateDeviceData=…``."""
    raw = _REPROVISION_RAW.match(value)
    if raw:
        return {
            "updateHubAssignment": raw.group(1).lower() == "true",
            "migrateDeviceData": raw.group(2).lower() == "true",
        }
    policy = v.validate_reprovision_policy(value)
    return policy.to_json() if policy else None


def dps_payload(payload: Mapping[str, Any]) -> Payload:
    """Return the JSON to send to DPS for a parsed row (without the import-only markers)."""
    out: Payload = json.loads(json.dumps(payload))
    att = out.get("attestation")
    if isinstance(att, dict):
        att.pop("thumbprintOnly", None)
        x = att.get("x509") or {}
        for slot in (x.get("clientCertificates") or {}).values():
            if isinstance(slot, dict):
                slot.pop("info", None)
    out.pop("etag", None)
    return out
