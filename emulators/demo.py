"""A demo fleet worth looking at, put into an emulated DPS instance from the outside.

Everything goes through the instance's own HTTP APIs, as a fleet's tooling and devices would:
the service API with the owner policy's SAS, the device registration API with each device's
derived key, and the loopback-only control routes (``/_emulator/seed`` for thousands of
individual enrollments in one call, ``/_emulator/registrations`` for X.509 devices, whose TLS
handshake the emulator does not play). Nothing of the portal is imported.

What :func:`seed` leaves (``scale`` 1.0; every count scales):

- 5,000 individual enrollments (``demo-0000000`` …): symmetric key, TPM and X.509 mixed, tags
  ``plant``/``line``, some disabled, client certificates from 20 days expired to a year ahead;
- symmetric-key groups per site (``demo-site-*``) with their devices registered through the
  device API (real registration records, assigned by hashed allocation across the hubs);
- ``demo-site-custom`` (custom allocation: its devices' registrations **fail**, as the emulator
  calls no webhook) and ``demo-site-closed`` (disabled: registrations end ``disabled``);
- X.509 groups whose signing CA certificates expired 3 days ago and expire in 5, 25 and 80 days
  (the 7-, 30- and 90-day buckets), with devices;
- ``demo-retired``: a group whose devices registered and which was then deleted, leaving its
  registration records behind (orphans: they still count against the quota).

:func:`outside_changes` then plays an operator using another tool after the portal's first
sync: tags changed, an enrollment deleted, new ones created, a group disabled.

The first group written is the marker: :func:`is_seeded` is true once :func:`seed` has run to
the end, so running it again does nothing (idempotent).
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulators.dps.sas import derive_device_key, generate_sas

SERVICE_API = "2021-10-01"
DEVICE_API = "2021-06-01"
PREFIX = "demo"
#: Written last by :func:`seed`: its presence means the fleet is complete.
MARKER_GROUP = "demo-site-zz-complete"
SITES = ("amsterdam", "berlin", "lisbon", "oslo")
#: Days from now to the notAfter of each X.509 group's signing certificate.
X509_GROUPS = {"demo-x509-expired": -3, "demo-x509-7d": 5, "demo-x509-30d": 25, "demo-x509-90d": 80}

Progress = Callable[[str], None]


@dataclass
class DemoCounts:
    """What a run wrote (for the log and the tests)."""

    enrollments: int = 0
    groups: int = 0
    registrations: int = 0
    failed: int = 0
    orphans: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class DemoTarget:
    """One emulated instance, as endpoints.json describes it."""

    host: str
    id_scope: str
    key_name: str
    key: str
    ca_cert: str
    session: requests.Session = field(default_factory=requests.Session)

    @classmethod
    def from_endpoints(cls, endpoints: dict[str, Any], name: str) -> DemoTarget:
        entry = next(d for d in endpoints["dps"] if d["name"] == name)
        parts = dict(p.split("=", 1) for p in entry["connection_string"].split(";") if "=" in p)
        target = cls(
            host=entry["host"],
            id_scope=entry["id_scope"],
            key_name=parts["SharedAccessKeyName"],
            key=parts["SharedAccessKey"],
            ca_cert=endpoints["ca_cert"],
        )
        target.session.trust_env = False
        target.session.verify = target.ca_cert
        return target

    # -- the service API, as the owner policy ---------------------------------------------------
    def service(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        auth = generate_sas(self.host, self.key, key_name=self.key_name)
        response = self.session.request(
            method,
            f"https://{self.host}{path}",
            params={"api-version": SERVICE_API},
            json=body,
            headers={"Authorization": auth, **headers},
            timeout=60,
        )
        if response.status_code == 404 and method != "PUT":
            return None
        response.raise_for_status()
        return response.json() if response.content else None

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(
            method, f"https://{self.host}/_emulator/{path}", json=body, timeout=600
        )
        response.raise_for_status()
        return response.json() if response.content else None

    # -- the device API ---------------------------------------------------------------------------
    def register(self, registration_id: str, device_key: str) -> str:
        """Register one device with its symmetric key; return the status it ended in."""
        resource = f"{self.id_scope}/registrations/{registration_id}"
        auth = generate_sas(resource, device_key, key_name="registration")
        quoted = urllib.parse.quote(registration_id, safe="")
        base = f"https://{self.host}/{self.id_scope}/registrations/{quoted}"
        response = self.session.put(
            f"{base}/register",
            params={"api-version": DEVICE_API},
            json={"registrationId": registration_id},
            headers={"Authorization": auth},
            timeout=30,
        )
        response.raise_for_status()
        operation = response.json()["operationId"]
        status = self.session.get(
            f"{base}/operations/{operation}",
            params={"api-version": DEVICE_API},
            headers={"Authorization": auth},
            timeout=30,
        )
        status.raise_for_status()
        return str(status.json()["status"])


def _signing_certificate(name: str, days: int) -> str:
    """Return a self-signed CA certificate (PEM) whose notAfter is ``days`` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} signing CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _tags(site: str, i: int) -> dict[str, Any]:
    return {"tags": {"site": site, "line": "abcd"[i % 4]}}


def _group(group_id: str, attestation: dict[str, Any], site: str, **extra: Any) -> dict[str, Any]:
    return {
        "enrollmentGroupId": group_id,
        "attestation": attestation,
        "initialTwin": _tags(site, len(group_id)),
        "provisioningStatus": "enabled",
        **extra,
    }


def is_seeded(target: DemoTarget) -> bool:
    """Return whether :func:`seed` has completed on this instance."""
    return target.service("GET", f"/enrollmentGroups/{MARKER_GROUP}") is not None


def _register_all(
    target: DemoTarget, group_key: str, ids: Iterable[str], counts: DemoCounts
) -> None:
    def one(rid: str) -> str:
        return target.register(rid, derive_device_key(group_key, rid))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for status in pool.map(one, ids):
            counts.registrations += 1
            counts.failed += status == "failed"


def _symmetric_group(
    target: DemoTarget, group_id: str, site: str, devices: int, counts: DemoCounts, **extra: Any
) -> str:
    body = _group(group_id, {"type": "symmetricKey"}, site, **extra)
    stored = target.service("PUT", f"/enrollmentGroups/{group_id}", body)
    counts.groups += 1
    key = str(stored["attestation"]["symmetricKey"]["primaryKey"])
    _register_all(target, key, (f"{group_id}-dev-{n:05d}" for n in range(devices)), counts)
    return key


def _x509_groups(target: DemoTarget, devices: int, counts: DemoCounts) -> None:
    for group_id, days in X509_GROUPS.items():
        pem = _signing_certificate(group_id, days)
        attestation = {
            "type": "x509",
            "x509": {"signingCertificates": {"primary": {"certificate": pem}}},
        }
        target.service(
            "PUT", f"/enrollmentGroups/{group_id}", _group(group_id, attestation, "oslo")
        )
        counts.groups += 1
        for n in range(devices):
            rid = f"{group_id}-dev-{n:05d}"
            target.control(
                "POST", "registrations", {"registrationId": rid, "enrollmentGroupId": group_id}
            )
            counts.registrations += 1


def _quota_lifted(target: DemoTarget) -> dict[str, Any]:
    """Lift the instance's quota for the seeding; return the quota to put back."""
    before = dict(target.control("GET", "config").get("quota") or {})
    target.control("PUT", "config", {"quota": {"enabled": False}})
    return before


def seed(target: DemoTarget, *, scale: float = 1.0, progress: Progress = print) -> DemoCounts:
    """Fill the instance with the demo fleet (nothing when it already holds it)."""
    counts = DemoCounts()
    if is_seeded(target):
        progress("already seeded")
        return counts

    def n(value: int) -> int:
        return max(1, round(value * scale))

    quota = _quota_lifted(target)
    try:
        started = time.monotonic()
        answer = target.control("POST", "seed", {"count": n(5000), "prefix": PREFIX})
        counts.enrollments = int(answer["inserted"])
        progress(f"{counts.enrollments} individual enrollments")
        for i, site in enumerate(SITES):
            _symmetric_group(target, f"demo-site-{site}", site, n(500 - 60 * i), counts)
            progress(f"group demo-site-{site}: {counts.registrations} devices registered so far")
        custom = {
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": "https://allocator.example/api/allocate",
                "apiVersion": "2021-10-01",
            },
        }
        _symmetric_group(target, "demo-site-custom", "berlin", n(40), counts, **custom)
        _symmetric_group(
            target, "demo-site-closed", "lisbon", n(25), counts, provisioningStatus="disabled"
        )
        _x509_groups(target, n(60), counts)
        progress(f"X.509 groups: {counts.registrations} devices registered so far")
        _individual_registrations(target, n(300), counts)
        before = counts.registrations
        _symmetric_group(target, "demo-retired", "amsterdam", n(80), counts)
        target.service("DELETE", "/enrollmentGroups/demo-retired")
        counts.groups -= 1
        counts.orphans = counts.registrations - before
        progress(f"demo-retired deleted, leaving {counts.orphans} orphaned registration records")
        target.service(
            "PUT",
            f"/enrollmentGroups/{MARKER_GROUP}",
            _group(MARKER_GROUP, {"type": "symmetricKey"}, "oslo", provisioningStatus="disabled"),
        )
        counts.groups += 1
        progress(f"seeded in {time.monotonic() - started:.1f} s")
    finally:
        target.control("PUT", "config", {"quota": quota or {"enabled": True}})
    return counts


def _individual_registrations(target: DemoTarget, count: int, counts: DemoCounts) -> None:
    # Every 7th of the seeded enrollments registered; X.509 and TPM ones cannot do a handshake
    # here, so the control route writes their records (allocated by the instance's policy).
    for i in range(0, count * 7, 7):
        target.control("POST", "registrations", {"registrationId": f"{PREFIX}-{i:07d}"})
        counts.registrations += 1


def outside_changes(target: DemoTarget, *, progress: Progress = print) -> int:
    """Change a few records as another tool would (after the portal's first sync); return how many."""
    changed = 0
    for i in (6, 16, 26):  # TPM enrollments of the seed (i % 10 in 6..7): no keys to lose
        rid = f"{PREFIX}-{i:07d}"
        doc = target.service("GET", f"/enrollments/{rid}")
        if doc is None:
            continue
        doc.setdefault("initialTwin", {}).setdefault("tags", {})["changedBy"] = "az-cli"
        target.service("PUT", f"/enrollments/{rid}", doc, **{"If-Match": doc["etag"]})
        changed += 1
    target.service("DELETE", f"/enrollments/{PREFIX}-0000010")
    changed += 1
    for n in range(3):
        rid = f"demo-outside-{n}"
        body = {
            "registrationId": rid,
            "attestation": {"type": "symmetricKey"},
            "initialTwin": _tags("berlin", n),
        }
        target.service("PUT", f"/enrollments/{rid}", body)
        changed += 1
    group = target.service("GET", "/enrollmentGroups/demo-site-oslo")
    if group is not None:
        # GET masks the keys: PUT the real ones back, or DPS would make new ones.
        path = "/enrollmentGroups/demo-site-oslo/attestationmechanism"
        group["attestation"] = target.service("POST", path)
        group["provisioningStatus"] = "disabled"
        target.service(
            "PUT", "/enrollmentGroups/demo-site-oslo", group, **{"If-Match": group["etag"]}
        )
        changed += 1
    progress(f"{changed} changes made outside the portal")
    return changed
