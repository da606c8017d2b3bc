"""Seeding an emulated DPS instance with generated enrollments (emulators/dps/seeding.py)."""

from __future__ import annotations

from pathlib import Path

from emulators.common.tenant import load_tenant
from emulators.dps.seeding import _request_problem, seed_enrollments
from emulators.dps.service import ENROLLMENTS, DpsService
from emulators.dps.store import DpsStore


def test_seeded_records_are_valid_varied_and_served_masked(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "dps.sqlite3")
    assert seed_enrollments(store, 250, prefix="bench") == 250
    assert seed_enrollments(store, 300, prefix="bench") == 50  # existing ids are skipped
    assert store.count_enrollments() == 300
    service = DpsService(store, load_tenant(None).dps_instances[0])
    page = service.query(ENROLLMENTS, 1000, None)
    assert len(page.items) == 300
    assert page.continuation is None
    assert {d["attestation"]["type"] for d in page.items} == {"symmetricKey", "tpm", "x509"}
    assert {d["provisioningStatus"] for d in page.items} == {"enabled", "disabled"}
    assert all("symmetricKey" not in d["attestation"] for d in page.items)  # keys masked
    assert store.get_enrollment("bench-0000003")["attestation"]["symmetricKey"]["primaryKey"]
    x509 = store.get_enrollment("bench-0000009")["attestation"]["x509"]
    assert x509["clientCertificates"]["primary"]["info"]["notAfterUtc"].endswith("Z")


def test_seed_request_is_checked() -> None:
    assert _request_problem({"count": 10}) is None
    assert _request_problem({"count": 0})
    assert _request_problem({"count": True})
    assert _request_problem({"count": 5, "prefix": "bad id!"})
    assert _request_problem({"count": 5, "start": -1})
    assert _request_problem([])
