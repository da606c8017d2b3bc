"""Fill an emulated instance with many generated individual enrollments, fast (benches, demos).

``seed_enrollments(store, count)`` writes ``count`` records shaped as the service stores
them (etag, times, property order), varied so the portal's filters have something to find:
a mix of symmetric-key, TPM and X.509 attestations, about one in ten disabled, tags
``plant``/``line``, IoT Edge on some, one device id in ten not the registration id, and X.509
certificate ``info`` expiring over the next year. Keys are random. A million records take
seconds: one transaction, one executemany per batch, no validation (the generator makes only
valid records).

Control route (loopback only, like every ``/_emulator`` route): ``POST /_emulator/seed`` with
``{"count": N, "prefix": "seed", "start": 0}`` answers ``{"inserted": n, "seconds": s}``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.dps import errors as e
from emulators.dps import records
from emulators.dps.errors import DpsError, control_body, error_response
from emulators.dps.store import DpsStore, new_etag, utc_now

BATCH = 10_000
MAX_COUNT = 2_000_000
_TPM_EK = base64.b64encode(b"\x00\x01" + b"emulated-endorsement-key" * 10).decode()


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _attestation(i: int, now: datetime) -> dict[str, Any]:
    kind = i % 10
    if kind < 6:
        key = base64.b64encode(os.urandom(64)).decode()
        return {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
    if kind < 8:
        return {"type": "tpm", "tpm": {"endorsementKey": _TPM_EK}}
    not_after = now + timedelta(days=(i * 7919) % 400 - 20)
    info = {
        "subjectName": f"CN=seed-device-{i}",
        "sha1Thumbprint": f"{i:040X}"[-40:],
        "sha256Thumbprint": f"{i:064X}"[-64:],
        "issuerName": f"CN=Seed Plant {i % 10} CA",
        "notBeforeUtc": _time(now - timedelta(days=365)),
        "notAfterUtc": _time(not_after),
        "serialNumber": f"{i:016X}",
        "version": 3,
    }
    return {"type": "x509", "x509": {"clientCertificates": {"primary": {"info": info}}}}


def generate(count: int, *, prefix: str = "seed", start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``count`` stored-shape enrollment records ``<prefix>-<n>`` from ``start``."""
    now = datetime.now(UTC)
    for i in range(start, start + count):
        rid = f"{prefix}-{i:07d}"
        stamp = utc_now()
        doc: dict[str, Any] = {
            "registrationId": rid,
            # Most devices take their registration id; one in ten has a name of its own.
            "deviceId": rid if i % 10 else f"gw-{i:07d}",
            "attestation": _attestation(i, now),
            "capabilities": {"iotEdge": i % 20 == 0},
            "initialTwin": {
                "tags": {"plant": str((i // 7) % 10), "line": "abcd"[(i // 3) % 4]},
                "properties": {"desired": {"firmware": f"1.{i % 5}"}},
            },
            "provisioningStatus": "disabled" if i % 13 == 0 else "enabled",
            "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
            "allocationPolicy": "hashed",
        }
        yield records.stamp(doc, etag=new_etag(), created=stamp, updated=stamp, group=False)


def seed_enrollments(store: DpsStore, count: int, *, prefix: str = "seed", start: int = 0) -> int:
    """Insert ``count`` generated enrollments (ids already present are skipped); return how many."""
    inserted = 0
    batch: list[dict[str, Any]] = []
    for doc in generate(count, prefix=prefix, start=start):
        batch.append(doc)
        if len(batch) >= BATCH:
            inserted += store.put_enrollments_new(batch)
            batch = []
    if batch:
        inserted += store.put_enrollments_new(batch)
    return inserted


def _request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_COUNT:
        return f"'count' must be a whole number from 1 to {MAX_COUNT}."
    start = body.get("start", 0)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        return "'start' must be a whole number >= 0."
    prefix = body.get("prefix", "seed")
    if not isinstance(prefix, str) or not records.ID_RE.match(f"{prefix}-0000000"):
        return "'prefix' must make valid registration ids."
    return None


def routes(store: DpsStore) -> list[BaseRoute]:
    """Return the ``POST /_emulator/seed`` control route of one instance."""

    async def seed(request: Request) -> Response:
        try:
            body = await control_body(request)
        except DpsError as err:
            return error_response(err)
        problem = _request_problem(body)
        if problem:
            return error_response(DpsError(e.BAD_BODY, problem))
        started = time.perf_counter()
        inserted = await asyncio.to_thread(
            seed_enrollments,
            store,
            body["count"],
            prefix=body.get("prefix", "seed"),
            start=body.get("start", 0),
        )
        return JSONResponse(
            {"inserted": inserted, "seconds": round(time.perf_counter() - started, 3)}
        )

    return [Route("/_emulator/seed", seed, methods=["POST"])]
