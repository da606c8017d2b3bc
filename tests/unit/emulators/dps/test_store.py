"""The DPS emulator's SQLite store: case-insensitive ids, paging, persistence, reset."""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path

from emulators.dps.store import DpsStore, new_etag, store_path, utc_now


def _enrollment(rid: str, **extra: object) -> dict[str, object]:
    return {"registrationId": rid, "attestation": {"type": "tpm"}, **extra}


def test_enrollment_lookup_ignores_case_and_keeps_stored_case(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "s.sqlite3")
    store.put_enrollment(_enrollment("Dev-A"))
    got = store.get_enrollment("dev-a")
    assert got is not None
    assert got["registrationId"] == "Dev-A"
    assert store.count_enrollments() == 1
    store.put_enrollment(_enrollment("DEV-A", deviceId="x"))
    assert store.count_enrollments() == 1
    assert store.get_enrollment("dev-A")["deviceId"] == "x"  # type: ignore[index]
    assert store.delete_enrollment("dev-a") is True
    assert store.delete_enrollment("dev-a") is False
    assert store.count_enrollments() == 0


def test_pages_follow_storage_order_and_updates_keep_their_place(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "s.sqlite3")
    for i in range(5):
        store.put_enrollment(_enrollment(f"d{i}"))
    store.put_enrollment(_enrollment("d0", deviceId="changed"))
    first = store.list_enrollments(0, 3)
    assert [d["registrationId"] for d in first.items] == ["d0", "d1", "d2"]
    assert first.next_after is not None
    second = store.list_enrollments(first.next_after, 3)
    assert [d["registrationId"] for d in second.items] == ["d3", "d4"]
    assert second.next_after is None


def test_groups_are_counted_per_attestation_type(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "s.sqlite3")
    store.put_group({"enrollmentGroupId": "g1", "attestation": {"type": "x509"}})
    store.put_group({"enrollmentGroupId": "g2", "attestation": {"type": "symmetricKey"}})
    store.put_group({"enrollmentGroupId": "G2", "attestation": {"type": "x509"}})
    assert store.count_groups("x509") == 2
    assert store.count_groups("symmetricKey") == 0
    assert store.count_groups() == 2


def test_registration_upsert_keeps_created_time_and_changes_etag(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "s.sqlite3")
    first = store.upsert_registration("dev1", {"status": "assigning"}, group_id="Grp")
    second = store.upsert_registration(
        "DEV1", {"status": "assigned", "assignedHub": "h", "deviceId": "dev1"}, group_id="Grp"
    )
    assert second["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    assert second["etag"] != first["etag"]
    assert second["registrationId"] == "dev1"
    assert store.registration_group("dev1") == "grp"
    assert [r["status"] for r in store.list_registrations("GRP", 0, 10).items] == ["assigned"]
    assert store.delete_registration("dev1") is True
    assert store.get_registration("dev1") is None


def test_state_survives_reopening_and_reset_wipes_it(tmp_path: Path) -> None:
    path = store_path(tmp_path, "dps-x")
    store = DpsStore(path)
    store.put_enrollment(_enrollment("keep"))
    store.close()
    reopened = DpsStore(path)
    assert reopened.get_enrollment("keep") is not None
    assert reopened.count_enrollments() == 1
    reopened.reset()
    assert reopened.get_enrollment("keep") is None
    assert reopened.count_enrollments() == 0


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = DpsStore(tmp_path / "s.sqlite3")

    def write(prefix: str) -> None:
        for i in range(50):
            store.put_enrollment(_enrollment(f"{prefix}-{i}"))

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_enrollments() == 200
    assert len(store.list_enrollments(0, 1000).items) == 200


def test_etag_and_time_formats_match_the_recordings() -> None:
    raw = base64.b64decode(new_etag()).decode()
    assert re.fullmatch(r'"[0-9a-f]{8}-0000-0800-0000-[0-9a-f]{12}"', raw)
    assert new_etag() != new_etag()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z", utc_now())
