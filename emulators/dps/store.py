"""SQLite persistence for one emulated DPS instance: enrollments, groups, registration records.

One file per instance, ``<state_dir>/dps-<name>.sqlite3``, in WAL mode, kept open for the
life of the process. Every method is safe to call from any thread: one connection is
shared under a re-entrant lock (SQLite work here takes microseconds, so a lock beats a pool).

Records are stored as the full JSON document the service keeps, *including* secrets
(symmetric keys): masking for GET and query happens in the API layer, not here. IDs are
case-insensitive, so rows are keyed by the lower-cased id while the document keeps the
case the client sent. Ordering for queries is storage order (insertion sequence); an
update keeps a record's place, as the real service's paging did.

Stable API (other modules rely on these names):

``DpsStore(path)``
``store.get_enrollment(registration_id) -> dict | None``      full record, keys included
``store.put_enrollment(record) -> None``                      insert or replace by ``registrationId``
``store.put_enrollments_new(records) -> int``                 bulk insert of new ones (seeding)
``store.delete_enrollment(registration_id) -> bool``
``store.count_enrollments() -> int``
``store.list_enrollments(after, limit) -> Page``
``store.get_group(group_id) -> dict | None``                  full record, keys included
``store.put_group(record) -> None``                           insert or replace by ``enrollmentGroupId``
``store.delete_group(group_id) -> bool``
``store.count_groups(attestation_type=None) -> int``
``store.list_groups(after, limit) -> Page``
``store.get_registration(registration_id) -> dict | None``    a DeviceRegistrationState document
``store.upsert_registration(registration_id, fields, group_id=None) -> dict``
    create or update a registration record: ``fields`` are DeviceRegistrationState
    properties (assignedHub, deviceId, status, substatus, errorCode, errorMessage,
    payload); ``registrationId``, ``createdDateTimeUtc`` (kept on update),
    ``lastUpdatedDateTimeUtc`` and a new ``etag`` are set here. ``group_id`` links the
    record to an enrollment group (None for an individual enrollment).
``store.registration_group(registration_id) -> str | None``   the group id a record belongs to
``store.delete_registration(registration_id) -> bool``
``store.list_registrations(group_id, after, limit) -> Page``
``store.transaction()``                                       context manager: the store lock, for
    check-then-write sequences that must not interleave with other threads
``store.reset() -> None``                                     wipe the instance
``store.close() -> None``

Helpers: ``new_etag()`` (base64 of a quoted Cosmos-style etag, as observed) and
``utc_now()`` (ISO-8601 with 7 fractional digits, trailing zeros dropped, ``Z``).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrollments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_groups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    group_id TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS registrations_by_group ON registrations (group_id, seq);
"""


_second_cache: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """Return the current UTC time as DPS writes it (7 fractional digits, zeros dropped)."""
    global _second_cache
    secs, rem = divmod(time.time_ns(), 1_000_000_000)
    cached_secs, base = _second_cache
    if cached_secs != secs:
        base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (secs, base)
    frac = f"{rem // 100:07d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def new_etag() -> str:
    """Return a fresh etag: base64 of a quoted Cosmos-style id ending in the Unix time."""
    u = os.urandom(6).hex()
    raw = f'"{u[:8]}-0000-0800-0000-{int(time.time()):08x}{u[8:12]}"'
    return base64.b64encode(raw.encode("ascii")).decode("ascii")


@dataclass(frozen=True)
class Page:
    """One page of records in storage order; ``next_after`` is None on the last page."""

    items: list[dict[str, Any]]
    next_after: int | None


class DpsStore:
    """Persist one DPS instance's records in SQLite (see the module docstring for the API)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction() in the thread holding the lock
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._enrollment_count: int = self._db.execute(
            "SELECT COUNT(*) FROM enrollments"
        ).fetchone()[0]

    # -- plumbing ------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the store lock and one SQLite transaction; nested calls join the outer one.

        Checks and writes inside happen together, and a bulk call commits once instead
        of once per item. On an exception everything since the outermost start is undone.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._enrollment_count = self._db.execute(
                    "SELECT COUNT(*) FROM enrollments"
                ).fetchone()[0]
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def _page(self, sql: str, args: tuple[Any, ...], limit: int) -> Page:
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            items=[json.loads(r[1]) for r in rows],
            next_after=rows[-1][0] if more and rows else None,
        )

    @staticmethod
    def _dump(doc: dict[str, Any]) -> str:
        return json.dumps(doc, separators=(",", ":"))

    # -- individual enrollments --------------------------------------------------------
    def get_enrollment(self, registration_id: str) -> dict[str, Any] | None:
        """Return the stored enrollment (keys included) or None; the id ignores case."""
        return self._one("SELECT doc FROM enrollments WHERE id = ?", (registration_id.lower(),))

    def put_enrollment(self, record: dict[str, Any]) -> None:
        """Insert or replace an enrollment, keyed by its ``registrationId``."""
        key = str(record["registrationId"]).lower()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO enrollments (id, doc) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
                (key, self._dump(record)),
            )
            if cur.rowcount:
                self._enrollment_count += 1
            else:
                self._db.execute(
                    "UPDATE enrollments SET doc = ? WHERE id = ?", (self._dump(record), key)
                )

    def put_enrollments_new(self, records: list[dict[str, Any]]) -> int:
        """Insert many new enrollments in one transaction (seeding); existing ids are skipped.

        Return how many were inserted. One ``executemany`` keeps a million records to seconds.
        """
        rows = [(str(r["registrationId"]).lower(), self._dump(r)) for r in records]
        with self.transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO enrollments (id, doc) VALUES (?, ?) ON CONFLICT(id) DO NOTHING", rows
            )
            added = self._db.total_changes - before
            self._enrollment_count += added
        return added

    def delete_enrollment(self, registration_id: str) -> bool:
        """Delete an enrollment; return False when there was none."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM enrollments WHERE id = ?", (registration_id.lower(),)
            )
            if cur.rowcount:
                self._enrollment_count -= 1
            return cur.rowcount > 0

    def count_enrollments(self) -> int:
        """Return how many individual enrollments exist (kept in memory, O(1))."""
        return self._enrollment_count

    def list_enrollments(self, after: int, limit: int) -> Page:
        """Return up to ``limit`` enrollments stored after sequence number ``after``."""
        return self._page(
            "SELECT seq, doc FROM enrollments WHERE seq > ? ORDER BY seq LIMIT ?", (after,), limit
        )

    # -- enrollment groups ---------------------------------------------------------------
    def get_group(self, group_id: str) -> dict[str, Any] | None:
        """Return the stored enrollment group (keys included) or None; the id ignores case."""
        return self._one("SELECT doc FROM enrollment_groups WHERE id = ?", (group_id.lower(),))

    def put_group(self, record: dict[str, Any]) -> None:
        """Insert or replace an enrollment group, keyed by its ``enrollmentGroupId``."""
        key = str(record["enrollmentGroupId"]).lower()
        kind = str((record.get("attestation") or {}).get("type", ""))
        doc = self._dump(record)
        with self._lock:
            self._db.execute(
                "INSERT INTO enrollment_groups (id, kind, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, doc = excluded.doc",
                (key, kind, doc),
            )

    def delete_group(self, group_id: str) -> bool:
        """Delete an enrollment group; return False when there was none."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM enrollment_groups WHERE id = ?", (group_id.lower(),)
            )
            return cur.rowcount > 0

    def count_groups(self, attestation_type: str | None = None) -> int:
        """Return how many groups exist, optionally only those of one attestation type."""
        with self._lock:
            if attestation_type is None:
                row = self._db.execute("SELECT COUNT(*) FROM enrollment_groups").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM enrollment_groups WHERE kind = ?", (attestation_type,)
                ).fetchone()
        return int(row[0])

    def list_groups(self, after: int, limit: int) -> Page:
        """Return up to ``limit`` groups stored after sequence number ``after``."""
        return self._page(
            "SELECT seq, doc FROM enrollment_groups WHERE seq > ? ORDER BY seq LIMIT ?",
            (after,),
            limit,
        )

    # -- registration records --------------------------------------------------------------
    def get_registration(self, registration_id: str) -> dict[str, Any] | None:
        """Return the DeviceRegistrationState document or None; the id ignores case."""
        return self._one("SELECT doc FROM registrations WHERE id = ?", (registration_id.lower(),))

    def registration_group(self, registration_id: str) -> str | None:
        """Return the (lower-cased) group id a registration belongs to, None if individual."""
        with self._lock:
            row = self._db.execute(
                "SELECT group_id FROM registrations WHERE id = ?", (registration_id.lower(),)
            ).fetchone()
        return row[0] if row else None

    def upsert_registration(
        self, registration_id: str, fields: dict[str, Any], group_id: str | None = None
    ) -> dict[str, Any]:
        """Create or update a registration record and return the stored document.

        ``createdDateTimeUtc`` survives updates; ``lastUpdatedDateTimeUtc`` and ``etag``
        change on every call. Keys of ``fields`` whose value is None are left out.
        """
        key = registration_id.lower()
        now = utc_now()
        with self._lock:
            old = self.get_registration(registration_id)
            doc: dict[str, Any] = {
                "registrationId": old["registrationId"] if old else registration_id,
                "createdDateTimeUtc": old["createdDateTimeUtc"] if old else now,
            }
            for name in ("assignedHub", "deviceId", "status", "substatus", "errorCode"):
                if fields.get(name) is not None:
                    doc[name] = fields[name]
            if fields.get("errorMessage") is not None:
                doc["errorMessage"] = fields["errorMessage"]
            doc["lastUpdatedDateTimeUtc"] = now
            doc["etag"] = new_etag()
            if fields.get("payload") is not None:
                doc["payload"] = fields["payload"]
            self._db.execute(
                "INSERT INTO registrations (id, group_id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET group_id = excluded.group_id, doc = excluded.doc",
                (key, group_id.lower() if group_id else None, self._dump(doc)),
            )
        return doc

    def delete_registration(self, registration_id: str) -> bool:
        """Delete a registration record; return False when there was none."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM registrations WHERE id = ?", (registration_id.lower(),)
            )
            return cur.rowcount > 0

    def list_registrations(self, group_id: str, after: int, limit: int) -> Page:
        """Return up to ``limit`` registrations of one group stored after ``after``."""
        return self._page(
            "SELECT seq, doc FROM registrations WHERE group_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (group_id.lower(), after),
            limit,
        )

    # -- lifecycle -----------------------------------------------------------------------
    def reset(self) -> None:
        """Delete every record of this instance."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table in ("enrollments", "enrollment_groups", "registrations"):
                    self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._enrollment_count = 0

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def store_path(state_dir: Path | str, instance_name: str) -> Path:
    """Return the SQLite file of one instance under the state directory."""
    return Path(state_dir) / f"dps-{instance_name}.sqlite3"
