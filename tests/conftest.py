"""Fixtures shared by every test: no internet, the emulators, Azure settings pointing at them."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.caches import reset_module_caches

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: Any, address: Any) -> None:
    if not _allowed(address):
        raise OSError(f"test tried to reach {address!r}: only loopback is allowed in tests")
    _real_connect(self, address)


def _guarded_connect_ex(self: Any, address: Any) -> int:
    if not _allowed(address):
        raise OSError(f"test tried to reach {address!r}: only loopback is allowed in tests")
    return _real_connect_ex(self, address)


def _flush_past_the_audit_guards() -> None:
    """Let Django's test flush TRUNCATE the append-only audit tables on PostgreSQL.

    Migration audit 0003 refuses TRUNCATE of the audit tables, which is what the flush after
    a transactional test issues; triggers do not fire for a session in the replica role (the
    tests connect as a superuser), so the flush runs in that role and production stays guarded.
    """
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except ImportError:  # no PostgreSQL driver: SQLite runs, nothing to guard
        return
    real = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: Any, sql_list: Iterable[str]) -> None:
        real(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    DatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]


_flush_past_the_audit_guards()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API keeps an event loop running in the
    main thread for the rest of the session, which breaks later asyncio.run() callers.

    ``trylast`` so that this runs after pytest-django's own reordering by database use.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(autouse=True, scope="session")
def _block_internet() -> Iterator[None]:
    """Fail loudly on any connection that leaves 127.0.0.1 (Zulip's block_internet)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _reset_module_caches() -> Iterator[None]:
    """Start and leave every test with the portal's process caches empty (tests/support/caches.py).

    Memos of tokens, discovery documents, rate buckets and configured backends outlive a
    test's settings and database; a test that changes either must not see the old ones.
    """
    reset_module_caches()
    yield
    reset_module_caches()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Return ../shared/reference, or skip with the reason when it is absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"shared reference files not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start the Entra ID, ARM and DPS emulators of the default tenant for the session."""
    from emulators.common.server import EmulatorStack

    state_dir = tmp_path_factory.mktemp("emulators")
    # The whole suite shares these instances: a per-minute quota would make unrelated tests
    # fail with 429 depending on their order. Quota tests set their own through /_emulator/config.
    (state_dir / "dps-controls.json").write_text('{"quota": {"enabled": false}}')
    stack = EmulatorStack(state_dir).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def endpoints(emulators: Any) -> dict[str, Any]:
    """Return the running emulators' endpoints.json content."""
    return emulators.endpoints()


@pytest.fixture
def azure_settings(settings: Any, endpoints: dict[str, Any]) -> Any:
    """Point the portal's Azure settings at the running emulators for one test."""
    portal_app = next(a for a in endpoints["apps"] if a["name"] == "DPS Enrollment Portal")
    settings.ENTRA_TENANT_ID = endpoints["tenant_id"]
    settings.ENTRA_AUTHORITY = endpoints["authority"]
    settings.ENTRA_CLIENT_ID = portal_app["client_id"]
    settings.ENTRA_CLIENT_SECRET = portal_app["client_secret"]
    settings.AZURE_CA_BUNDLE = endpoints["ca_cert"]
    settings.ARM_ENDPOINT = endpoints["arm_endpoint"]
    settings.DPS_EMULATOR_HOSTS = emulator_dps_hosts(endpoints)
    return settings


def emulator_dps_hosts(endpoints: dict[str, Any]) -> dict[str, str]:
    """Return the emulators' DPS hosts as development settings allow them (host -> resource id)."""
    return {str(d["host"]).lower(): str(d["resource_id"]) for d in endpoints["dps"]}
