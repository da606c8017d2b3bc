"""Replay real DPS traffic (reference/dps-service/recordings) against a fresh emulator.

Each recorded service request goes, in order, to a new instance with a valid SAS in place
of the Authorization header the recorder removed. The response must have the recorded
status, content type, ``x-ms-item-type``, continuation presence and a body of the same
shape: the same properties present and absent, the same JSON types, and the same values
except those the service generates (etags, times, keys, certificate details).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.emulators.dps.conftest import Dps
from tests.support.certs import self_signed_pem

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# Values the service generates or the recorder sanitized: compared by type only.
VOLATILE = {
    "etag",
    "createdDateTimeUtc",
    "lastUpdatedDateTimeUtc",
    "primaryKey",
    "secondaryKey",
    "sha1Thumbprint",
    "sha256Thumbprint",
    "notBeforeUtc",
    "notAfterUtc",
    "serialNumber",
}
AAD_HOST = "login.microsoftonline.com"
FORWARDED_HEADERS = ("If-Match", "x-ms-continuation", "x-ms-max-item-count", "Content-Type")


def _recordings(reference_dir: Path) -> list[Path]:
    folder = reference_dir / "dps-service" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"no recordings folder at {folder}")
    files = sorted(folder.glob("*.json"))
    if not files:
        pytest.skip(f"no recordings in {folder}")
    return files


def _id_of(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("registrationId") or item.get("enrollmentGroupId") or "").lower()
    return ""


def assert_same_shape(
    expected: Any, actual: Any, where: str = "body", volatile: frozenset[str] = frozenset()
) -> None:
    """Compare two JSON values: same keys, same types, same values unless volatile."""
    volatile = volatile | VOLATILE
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert set(actual) == set(expected), (
            f"{where}: properties differ; missing {sorted(set(expected) - set(actual))}, "
            f"extra {sorted(set(actual) - set(expected))}"
        )
        for key, value in expected.items():
            sub = f"{where}.{key}"
            if key in volatile:
                assert type(actual[key]) is type(value), f"{sub}: type differs"
            else:
                assert_same_shape(value, actual[key], sub, volatile)
        return
    if isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected an array"
        assert len(actual) == len(expected), (
            f"{where}: {len(actual)} items, recorded {len(expected)}"
        )
        # Both page in storage order, but the real storage order is a hash order: match
        # items by id when a page holds the same ids, else by position with ids as values
        # that may differ (every item of the paging recording has the same shape).
        if sorted(map(_id_of, expected)) != sorted(map(_id_of, actual)):
            volatile = volatile | {"registrationId", "enrollmentGroupId", "deviceId"}
        exp_sorted = sorted(expected, key=_id_of)
        act_sorted = sorted(actual, key=_id_of)
        for i, (e, a) in enumerate(zip(exp_sorted, act_sorted, strict=True)):
            assert_same_shape(e, a, f"{where}[{i}]", volatile)
        return
    assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"
    assert actual == expected, f"{where}: {actual!r} != recorded {expected!r}"


class Replayer:
    """Send one recording's entries to an emulator, substituting sanitized values."""

    def __init__(self, dps: Dps) -> None:
        self.dps = dps
        self.keys: dict[str, str] = {}
        self.tokens: dict[str, str] = {}  # recorded continuation -> emulator continuation
        self.etags: dict[str, str] = {}  # recorded etag -> emulator etag
        self.skipped: list[str] = []

    def _key(self, placeholder: str) -> str:
        # The recorder replaced real keys with "primaryKey"/"secondaryKey".
        if placeholder not in self.keys:
            self.keys[placeholder] = base64.b64encode(secrets.token_bytes(64)).decode()
        return self.keys[placeholder]

    def _fix_body(self, body: Any, recorded_response: Any) -> Any:
        if isinstance(body, dict):
            out = {}
            for k, v in body.items():
                if k in ("primaryKey", "secondaryKey") and isinstance(v, str):
                    out[k] = self._key(v)
                elif k == "etag" and v in self.etags:
                    out[k] = self.etags[v]
                elif k == "certificate" and v == "certificate":
                    out[k] = self_signed_pem(self._recorded_cn(recorded_response))
                else:
                    out[k] = self._fix_body(v, recorded_response)
            return out
        if isinstance(body, list):
            return [self._fix_body(v, recorded_response) for v in body]
        return body

    @staticmethod
    def _recorded_cn(response: Any) -> str:
        text = json.dumps(response)
        marker = '"subjectName": "CN='
        if marker in text:
            return text.split(marker, 1)[1].split('"', 1)[0]
        return "replayed-certificate"

    def _simulate_device_registration(self, entry: dict[str, Any]) -> None:
        """Write the registration the real device made off the record (not in the file)."""
        recorded = entry["ResponseBody"]
        rid = urlsplit(entry["RequestUri"]).path.rsplit("/", 1)[-1]
        groups = self.dps.store.list_groups(0, 100).items
        group = groups[0]["enrollmentGroupId"] if groups else None
        self.dps.store.upsert_registration(
            rid,
            {k: recorded.get(k) for k in ("assignedHub", "deviceId", "status", "substatus")},
            group_id=group,
        )

    def play(self, entry: dict[str, Any], number: int) -> None:
        url = urlsplit(entry["RequestUri"])
        method = entry["RequestMethod"]
        if url.hostname == AAD_HOST:
            self.skipped.append(f"#{number} {method} {url.path}: Entra ID login, not DPS")
            return
        if (
            method == "GET"
            and url.path.startswith("/registrations/")
            and entry["StatusCode"] == 200
            and self.dps.store.get_registration(url.path.rsplit("/", 1)[-1]) is None
        ):
            self._simulate_device_registration(entry)
        headers = {
            k: v
            for k, v in entry["RequestHeaders"].items()
            if k in FORWARDED_HEADERS or k.lower() in {h.lower() for h in FORWARDED_HEADERS}
        }
        if "x-ms-continuation" in headers:
            headers["x-ms-continuation"] = self.tokens[headers["x-ms-continuation"]]
        if headers.get("If-Match") in self.etags:
            headers["If-Match"] = self.etags[headers["If-Match"]]
        recorded_body = entry["ResponseBody"]
        if isinstance(recorded_body, str):
            recorded_body = json.loads(recorded_body)
        body = entry["RequestBody"]
        content = None
        if body is not None:
            content = json.dumps(self._fix_body(body, recorded_body)).encode()
        resp = self.dps.client.request(
            method,
            f"{url.path}?{url.query}",
            content=content,
            headers={**headers, **self.dps.owner_sas()},
        )
        where = f"#{number} {method} {url.path}"
        assert resp.status_code == entry["StatusCode"], f"{where}: {resp.status_code} {resp.text}"
        rec_headers = {k.lower(): v for k, v in entry["ResponseHeaders"].items()}
        assert resp.headers.get("content-type") == rec_headers.get("content-type"), where
        assert resp.headers.get("x-ms-item-type") == rec_headers.get("x-ms-item-type"), where
        assert ("x-ms-continuation" in resp.headers) == ("x-ms-continuation" in rec_headers), where
        # The spec lists x-ms-max-item-count as a query response header, but DPS answered the
        # recorded queries (with and without it in the request) without echoing it.
        assert ("x-ms-max-item-count" in resp.headers) == ("x-ms-max-item-count" in rec_headers), (
            where
        )
        assert ("x-content-type-options" in resp.headers) == (
            "x-content-type-options" in rec_headers
        ), where
        assert "strict-transport-security" in resp.headers, where
        if "x-ms-continuation" in rec_headers:
            self.tokens[rec_headers["x-ms-continuation"]] = resp.headers["x-ms-continuation"]
        if recorded_body is None:
            assert resp.content == b"", where
        else:
            actual = resp.json()
            assert_same_shape(recorded_body, actual, where)
            self._learn_etags(recorded_body, actual)

    def _learn_etags(self, recorded: Any, actual: Any) -> None:
        pairs = [(recorded, actual)]
        if isinstance(recorded, list):
            pairs = list(zip(sorted(recorded, key=_id_of), sorted(actual, key=_id_of), strict=True))
        for rec, act in pairs:
            if isinstance(rec, dict) and isinstance(rec.get("etag"), str):
                self.etags[rec["etag"]] = act["etag"]


def test_every_recording_replays_with_the_recorded_results(
    reference_dir: Path, make_dps: Callable[..., Dps], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every recorded DPS call gets the recorded status, headers and body shape."""
    files = _recordings(reference_dir)
    played = 0
    for path in files:
        entries = json.loads(path.read_text())["Entries"]
        replayer = Replayer(make_dps())
        for number, entry in enumerate(entries):
            replayer.play(entry, number)
        played += len(entries) - len(replayer.skipped)
        with capsys.disabled():
            for reason in replayer.skipped:
                print(f"\n[replay skipped] {path.name} {reason}")
    assert played > 300  # the paging recording alone holds 305 DPS calls
