"""The DPS service operations over the store: ETag rules, limits, bulk, paging.

Each function takes already-parsed input and returns a response document or raises
:class:`DpsError`. Choices for behaviour the references leave open are written in
docs/emulators-dps.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from emulators.common.tenant import DpsInstance
from emulators.dps import errors as e
from emulators.dps import records
from emulators.dps.errors import DpsError
from emulators.dps.store import DpsStore, Page, new_etag, utc_now

BULK_MAX_ITEMS = 10
LIMITS_FILE = "dps-limits.json"
BULK_MODES = ("create", "update", "updateIfMatchETag", "delete")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_RE = re.compile(r"^\+RID:~(\d+)#")


@dataclass(frozen=True)
class Limits:
    """Count limits of one instance (API.md §10)."""

    max_enrollments: int = 1_000_000
    max_groups_per_attestation: int = 100

    @classmethod
    def load(cls, state_dir: Path, instance_name: str) -> Limits:
        """Read ``<state_dir>/dps-limits.json`` (absent: the real limits).

        The file holds ``max_enrollments`` and/or ``max_groups_per_attestation`` at the top
        level (every instance) and/or under ``instances.<name>``; small values let tests and
        demos fill an instance with a few records. Bad content raises ValueError at start.
        """
        path = state_dir / LIMITS_FILE
        if not path.exists():
            return cls()
        raw = _limits_file(path)
        per_instance = raw.get("instances", {})
        if not isinstance(per_instance, dict):
            raise ValueError(f"{path}: instances must be an object")
        values: dict[str, int] = {}
        for where, section in (
            ("", raw),
            (f"instances.{instance_name}.", per_instance.get(instance_name, {})),
        ):
            values.update(_limit_values(path, where, section))
        return cls(**values)


def _limits_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return raw


def _limit_values(path: Path, where: str, section: Any) -> dict[str, int]:
    """Return the limits one section of dps-limits.json sets (``where`` names it in errors)."""
    if not isinstance(section, dict):
        raise ValueError(f"{path}: {where or 'the top level'} must be an object")
    names = {f.name for f in fields(Limits)}
    values: dict[str, int] = {}
    for key, value in section.items():
        if not where and key == "instances":
            continue
        if key not in names:
            raise ValueError(f"{path}: unknown limit {where}{key}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path}: {where}{key} must be a whole number >= 0")
        values[key] = value
    return values


@dataclass(frozen=True)
class QueryResult:
    items: list[dict[str, Any]]
    continuation: str | None


class _Kind:
    """What differs between individual enrollments and enrollment groups."""

    def __init__(self, group: bool) -> None:
        self.group = group
        self.id_field = "enrollmentGroupId" if group else "registrationId"
        self.not_found = e.GROUP_NOT_FOUND if group else e.ENROLLMENT_NOT_FOUND
        self.exists = e.GROUP_EXISTS if group else e.ENROLLMENT_EXISTS
        self.exists_text = (
            "EnrollmentGroup already exists." if group else "Enrollment already exists."
        )
        self.noun = "enrollment group" if group else "enrollment"


ENROLLMENTS = _Kind(group=False)
GROUPS = _Kind(group=True)


class DpsService:
    """Operations of one DPS instance."""

    def __init__(
        self, store: DpsStore, instance: DpsInstance, limits: Limits | None = None
    ) -> None:
        self.store = store
        self.instance = instance
        self.limits = limits or Limits()
        self.linked_hubs = tuple(h.name for h in instance.iot_hubs)

    # -- shared helpers ----------------------------------------------------------------------
    def _get(self, kind: _Kind, rid: str) -> dict[str, Any] | None:
        return self.store.get_group(rid) if kind.group else self.store.get_enrollment(rid)

    def _put(self, kind: _Kind, doc: dict[str, Any]) -> None:
        if kind.group:
            self.store.put_group(doc)
        else:
            self.store.put_enrollment(doc)

    def _delete(self, kind: _Kind, rid: str) -> bool:
        return self.store.delete_group(rid) if kind.group else self.store.delete_enrollment(rid)

    def _validate(self, kind: _Kind, body: Any, path_id: str) -> dict[str, Any]:
        if kind.group:
            return records.group_from_body(body, path_id, self.linked_hubs)
        return records.enrollment_from_body(body, path_id, self.linked_hubs)

    def _check_quota(self, kind: _Kind, doc: dict[str, Any]) -> None:
        if kind.group:
            att = doc["attestation"]["type"]
            if self.store.count_groups(att) >= self.limits.max_groups_per_attestation:
                raise DpsError(
                    e.QUOTA_EXCEEDED,
                    f"The limit of {self.limits.max_groups_per_attestation} enrollment groups "
                    f"with {att} attestation is reached.",
                )
        elif self.store.count_enrollments() >= self.limits.max_enrollments:
            raise DpsError(
                e.QUOTA_EXCEEDED,
                f"The limit of {self.limits.max_enrollments} individual enrollments is reached.",
            )

    def _write(
        self, kind: _Kind, path_id: str, body: Any, if_match: str | None, *, create_only: bool
    ) -> dict[str, Any]:
        """Create or replace under the ETag rules; return the stored record."""
        doc = self._validate(kind, body, path_id)
        with self.store.transaction():
            existing = self._get(kind, path_id)
            now = utc_now()
            if existing is None:
                if if_match:
                    raise DpsError(kind.not_found, f"The {kind.noun} '{path_id}' does not exist.")
                self._check_quota(kind, doc)
                record = records.stamp(
                    doc, etag=new_etag(), created=now, updated=now, group=kind.group
                )
            else:
                if create_only or not if_match:
                    raise DpsError(kind.exists, kind.exists_text)
                if if_match != "*" and if_match != existing.get("etag"):
                    raise DpsError(
                        e.PRECONDITION_FAILED,
                        f"The ETag does not match the current {kind.noun} (RFC 7232).",
                    )
                if kind.group and doc["attestation"]["type"] != existing["attestation"]["type"]:
                    self._check_quota(kind, doc)
                record = records.stamp(
                    doc,
                    etag=new_etag(),
                    created=existing["createdDateTimeUtc"],
                    updated=now,
                    group=kind.group,
                )
            self._put(kind, record)
        return record

    def _remove(self, kind: _Kind, rid: str, if_match: str | None) -> None:
        with self.store.transaction():
            existing = self._get(kind, rid)
            if existing is None:
                raise DpsError(kind.not_found, f"The {kind.noun} '{rid}' does not exist.")
            if if_match and if_match != "*" and if_match != existing.get("etag"):
                raise DpsError(
                    e.PRECONDITION_FAILED,
                    f"The ETag does not match the current {kind.noun} (RFC 7232).",
                )
            self._delete(kind, rid)

    # -- single-record operations ------------------------------------------------------------
    def get(self, kind: _Kind, rid: str) -> dict[str, Any]:
        """Return a record as GET shows it (keys masked; registrationState on enrollments)."""
        doc = self._get(kind, rid)
        if doc is None:
            raise DpsError(kind.not_found, f"The {kind.noun} '{rid}' does not exist.")
        out = records.masked(doc)
        if not kind.group:
            state = self.store.get_registration(rid)
            if state is None or self.store.registration_group(rid) is not None:
                state = {"registrationId": doc["registrationId"], "status": "unassigned"}
            out = records.with_registration_state(out, state)
        return out

    def create_or_update(
        self, kind: _Kind, rid: str, body: Any, if_match: str | None
    ) -> dict[str, Any]:
        """PUT: full replacement; the response carries the keys."""
        return self._write(kind, rid, body, if_match, create_only=False)

    def delete(self, kind: _Kind, rid: str, if_match: str | None) -> None:
        self._remove(kind, rid, if_match)

    def attestation(self, kind: _Kind, rid: str) -> dict[str, Any]:
        """Return the stored attestation mechanism, secrets included."""
        doc = self._get(kind, rid)
        if doc is None:
            raise DpsError(kind.not_found, f"The {kind.noun} '{rid}' does not exist.")
        mechanism: dict[str, Any] = doc["attestation"]
        return mechanism

    # -- bulk ---------------------------------------------------------------------------------
    def bulk(self, kind: _Kind, body: Any) -> dict[str, Any]:
        """Run a bulk operation item by item (not atomic); 200 with per-item errors."""
        items_field = "enrollmentGroups" if kind.group else "enrollments"
        if not isinstance(body, dict):
            raise DpsError(e.BAD_BODY, "The bulk operation must be a JSON object.")
        mode = body.get("mode")
        if mode not in BULK_MODES:
            raise DpsError(e.BULK_INVALID, f"'mode' must be one of {', '.join(BULK_MODES)}.")
        items = body.get(items_field)
        if not isinstance(items, list) or not items:
            raise DpsError(e.BULK_INVALID, f"'{items_field}' must be a non-empty array.")
        if len(items) > BULK_MAX_ITEMS:
            raise DpsError(
                e.BULK_INVALID,
                f"A bulk operation takes at most {BULK_MAX_ITEMS} {items_field}; {len(items)} were sent.",
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get(kind.id_field), str):
                raise DpsError(
                    e.BAD_BODY, f"'{items_field}[{i}].{kind.id_field}' must be a string."
                )
        errors: list[dict[str, Any]] = []
        with self.store.transaction():
            self._bulk_items(kind, mode, items, errors)
        return {"errors": errors, "isSuccessful": not errors}

    def _bulk_items(
        self, kind: _Kind, mode: str, items: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> None:
        """Apply each item in turn, collecting per-item errors."""
        for item in items:
            rid = item[kind.id_field]
            try:
                records.check_id(rid, kind.id_field)
                etag = item.get("etag") if isinstance(item.get("etag"), str) else None
                if mode == "delete":
                    self._remove(kind, rid, etag)
                elif mode == "create":
                    self._write(kind, rid, item, None, create_only=True)
                elif mode == "update":
                    self._write(kind, rid, item, etag, create_only=False)
                else:  # updateIfMatchETag: the item's etag must match an existing record
                    if self._get(kind, rid) is None:
                        raise DpsError(kind.not_found, f"The {kind.noun} '{rid}' does not exist.")
                    if not etag:
                        raise DpsError(e.PRECONDITION_FAILED, "The item carries no etag to match.")
                    self._write(kind, rid, item, etag, create_only=False)
            except DpsError as err:
                errors.append(
                    {kind.id_field: rid, "errorCode": err.code, "errorStatus": err.message}
                )

    # -- queries ----------------------------------------------------------------------------
    @staticmethod
    def page_size(header: str | None) -> int:
        if header is None or header.strip() == "":
            return DEFAULT_PAGE_SIZE
        try:
            size = int(header)
        except ValueError:
            raise DpsError(
                e.BAD_PAGING, "x-ms-max-item-count must be a positive integer."
            ) from None
        if size <= 0:
            raise DpsError(e.BAD_PAGING, "x-ms-max-item-count must be a positive integer.")
        return min(size, MAX_PAGE_SIZE)

    @staticmethod
    def _after(token: str | None) -> int:
        if not token:
            return 0
        try:
            parsed = json.loads(base64.b64decode(token, validate=True))
            match = _TOKEN_RE.match(parsed[0]["token"])
        except (binascii.Error, ValueError, KeyError, IndexError, TypeError):
            match = None
        if match is None:
            raise DpsError(e.BAD_PAGING, "The x-ms-continuation token is not valid.")
        return int(match.group(1))

    @staticmethod
    def _token(after: int) -> str:
        # Shaped like the observed Cosmos DB token; clients treat it as opaque.
        body = [{"token": f"+RID:~{after}#RT:1#TRC:{after}", "range": {"min": "", "max": "FF"}}]
        return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()

    def _result(self, page: Page, masked: bool) -> QueryResult:
        items = [records.masked(d) for d in page.items] if masked else page.items
        token = self._token(page.next_after) if page.next_after is not None else None
        return QueryResult(items, token)

    def query(self, kind: _Kind, size: int, token: str | None) -> QueryResult:
        """Return one page of enrollments or groups in storage order, keys masked."""
        after = self._after(token)
        page = (
            self.store.list_groups(after, size)
            if kind.group
            else self.store.list_enrollments(after, size)
        )
        return self._result(page, masked=True)

    # -- registration records -------------------------------------------------------------------
    def get_registration(self, rid: str) -> dict[str, Any]:
        doc = self.store.get_registration(rid)
        if doc is None:
            raise DpsError(e.REGISTRATION_NOT_FOUND, f"The registration '{rid}' does not exist.")
        return doc

    def delete_registration(self, rid: str, if_match: str | None) -> None:
        with self.store.transaction():
            doc = self.store.get_registration(rid)
            if doc is None:
                raise DpsError(
                    e.REGISTRATION_NOT_FOUND, f"The registration '{rid}' does not exist."
                )
            if if_match and if_match != "*" and if_match != doc.get("etag"):
                raise DpsError(
                    e.PRECONDITION_FAILED,
                    "The ETag does not match the current registration (RFC 7232).",
                )
            self.store.delete_registration(rid)

    def query_registrations(self, group_id: str, size: int, token: str | None) -> QueryResult:
        """Return one page of a group's registration records."""
        if self.store.get_group(group_id) is None:
            raise DpsError(e.GROUP_NOT_FOUND, f"The enrollment group '{group_id}' does not exist.")
        after = self._after(token)
        return self._result(self.store.list_registrations(group_id, after, size), masked=False)
