"""State of the Entra emulator.

Refresh tokens persist in SQLite (``<state>/entra.sqlite3``) so a portal's token cache
keeps working across an emulator restart; only their SHA-256 is stored. Authorization
codes, sign-in transactions and browser sessions are short-lived and stay in memory.
Every method takes a lock, so concurrent requests (threads or the event loop) are safe.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ACCESS_TOKEN_LIFETIME = 3600
DEFAULT_REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600  # confidential web app, as in Entra
DEFAULT_CODE_LIFETIME = 600
TRANSACTION_LIFETIME = 1800


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return max(0, int(raw)) if raw else default
    except ValueError:
        return default


@dataclass
class Lifetimes:
    """Token lifetimes in seconds; tests shorten them through the control route."""

    access_token: int = field(
        default_factory=lambda: _env_int(
            "EMULATOR_ACCESS_TOKEN_LIFETIME", DEFAULT_ACCESS_TOKEN_LIFETIME
        )
    )
    refresh_token: int = field(
        default_factory=lambda: _env_int(
            "EMULATOR_REFRESH_TOKEN_LIFETIME", DEFAULT_REFRESH_TOKEN_LIFETIME
        )
    )
    code: int = field(
        default_factory=lambda: _env_int("EMULATOR_CODE_LIFETIME", DEFAULT_CODE_LIFETIME)
    )

    def as_dict(self) -> dict[str, int]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "code": self.code,
        }


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    user_oid: str
    session_id: str
    auth_time: float
    nonce: str | None
    code_challenge: str | None
    max_age_requested: bool
    expires_at: float
    redeemed: bool = False


@dataclass
class Session:
    """A signed-in browser (Entra's ESTSAUTH cookie)."""

    user_oid: str
    auth_time: float


@dataclass
class RefreshRecord:
    client_id: str
    user_oid: str
    session_id: str
    auth_time: float
    expires_at: float
    revoked: bool


class EntraStore:
    """Codes, sessions and sign-in transactions in memory; refresh tokens in SQLite."""

    def __init__(self, state_dir: Path) -> None:
        self.lifetimes = Lifetimes()
        self._lock = threading.RLock()
        self._codes: dict[str, AuthCode] = {}
        self._sessions: dict[str, Session] = {}
        self._transactions: dict[str, tuple[float, str, dict[str, str]]] = {}
        path = Path(state_dir) / "entra.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                client_id TEXT NOT NULL,
                user_oid TEXT NOT NULL,
                session_id TEXT NOT NULL,
                auth_time REAL NOT NULL,
                issued_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            )"""
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS rt_user ON refresh_tokens(user_oid)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- authorization codes -------------------------------------------------------
    def new_code(self, **fields: Any) -> str:
        code = "1.emu." + secrets.token_urlsafe(48)
        now = time.time()
        with self._lock:
            # Forget codes long past expiry; recently used ones stay to detect reuse.
            for k in [k for k, c in self._codes.items() if c.expires_at + 3600 < now]:
                del self._codes[k]
            self._codes[code] = AuthCode(expires_at=now + self.lifetimes.code, **fields)
        return code

    def take_code(self, code: str) -> tuple[AuthCode | None, bool]:
        """Return the code's record and whether it had been redeemed before; mark it redeemed."""
        with self._lock:
            rec = self._codes.get(code)
            if rec is None:
                return None, False
            was = rec.redeemed
            rec.redeemed = True
            return rec, was

    # -- sign-in transactions (the hidden ``ctx`` of the sign-in form) ------------------
    def new_transaction(self, params: dict[str, str], browser_binding: str) -> str:
        txn = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            for k in [k for k, v in self._transactions.items() if v[0] < now]:
                del self._transactions[k]
            self._transactions[txn] = (now + TRANSACTION_LIFETIME, _digest(browser_binding), params)
        return txn

    def transaction(self, txn: str, browser_binding: str) -> dict[str, str] | None:
        with self._lock:
            entry = self._transactions.get(txn)
        if entry is None or entry[0] < time.time():
            return None
        if not secrets.compare_digest(entry[1], _digest(browser_binding)):
            return None
        return dict(entry[2])

    def end_transaction(self, txn: str) -> None:
        with self._lock:
            self._transactions.pop(txn, None)

    # -- browser sessions ------------------------------------------------------------
    def new_session(self, user_oid: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        s = Session(user_oid, time.time())
        with self._lock:
            self._sessions[sid] = s
        return sid, s

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            return self._sessions.get(sid)

    def end_session(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    # -- refresh tokens --------------------------------------------------------------
    def new_refresh_token(
        self, *, client_id: str, user_oid: str, session_id: str, auth_time: float
    ) -> str:
        token = "0.emu." + secrets.token_urlsafe(64)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO refresh_tokens (token_hash, client_id, user_oid, session_id,"
                " auth_time, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _digest(token),
                    client_id,
                    user_oid,
                    session_id,
                    auth_time,
                    now,
                    now + self.lifetimes.refresh_token,
                ),
            )
        return token

    def refresh_token(self, token: str) -> RefreshRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT client_id, user_oid, session_id, auth_time, expires_at, revoked"
                " FROM refresh_tokens WHERE token_hash = ?",
                (_digest(token),),
            ).fetchone()
        if row is None:
            return None
        return RefreshRecord(row[0], row[1], row[2], float(row[3]), float(row[4]), bool(row[5]))

    def revoke_user(self, user_oid: str | None) -> int:
        """Revoke the refresh tokens and browser sessions of one user (None: everyone)."""
        with self._lock:
            if user_oid is None:
                cur = self._db.execute("UPDATE refresh_tokens SET revoked = 1 WHERE revoked = 0")
                self._sessions.clear()
            else:
                cur = self._db.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE user_oid = ? AND revoked = 0",
                    (user_oid,),
                )
                for sid in [k for k, s in self._sessions.items() if s.user_oid == user_oid]:
                    del self._sessions[sid]
            return cur.rowcount

    def expire_user(self, user_oid: str | None) -> int:
        """Make refresh tokens of one user (None: everyone) expired now."""
        past = time.time() - 1
        with self._lock:
            if user_oid is None:
                cur = self._db.execute(
                    "UPDATE refresh_tokens SET expires_at = ? WHERE expires_at > ?", (past, past)
                )
            else:
                cur = self._db.execute(
                    "UPDATE refresh_tokens SET expires_at = ? WHERE user_oid = ? AND expires_at > ?",
                    (past, user_oid, past),
                )
            return cur.rowcount
